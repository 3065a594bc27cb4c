"""The variant-effect probe: fitting and saving it (model), applying it in score-vcf (apply), metrics (evaluation)."""
