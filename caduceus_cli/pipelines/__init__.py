"""Public pipelines: one function per command, each returning a typed result (score_vcf, embed, finetune_probe, pretrain)."""
