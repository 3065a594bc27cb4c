"""Every file touch: reference FASTA, VCF/BCF/TSV in and out, variant tables, embedding files, atomic outputs.

Coordinates are converted here, once: readers build ``Variant`` values (1-based ``pos1``,
0-based ``pos0``) and ``Interval0`` values (0-based, half-open).
"""
