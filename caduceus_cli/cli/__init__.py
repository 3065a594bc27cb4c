"""The command line (Typer): one module per command, shared options, progress and rendering.

Only this package imports typer; each command parses, calls one library function and renders.
"""
