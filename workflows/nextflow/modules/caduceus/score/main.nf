process CADUCEUS_SCORE {
    tag "${meta.id}"
    label 'process_medium'
    label 'process_gpu'

    conda "${moduleDir}/environment.yml"
    // built from this repository's Dockerfile; for Apptainer set `container` to the .sif (see ../../../nextflow.config)
    container 'caduceus:0.1.0'

    input:
    tuple val(meta), path(vcf)
    tuple val(meta2), path(fasta), path(fasta_index)
    path model

    output:
    tuple val(meta), path("*.vcf.gz"),     emit: vcf
    tuple val(meta), path("*.vcf.gz.tbi"), emit: tbi
    tuple val("${task.process}"), val('caduceus'), eval("caduceus --version | sed 's/^caduceus //'"), topic: versions, emit: versions_caduceus
    tuple val("${task.process}"), val('torch'), eval('python -c "import torch; print(torch.__version__)"'), topic: versions, emit: versions_torch

    when:
    task.ext.when == null || task.ext.when

    script:
    def args = task.ext.args ?: ''
    def prefix = task.ext.prefix ?: "${meta.id}"
    def model_arg = model ? "--model ${model}" : ''
    if ("${vcf}" == "${prefix}.vcf.gz") error "Input and output VCF are both named ${vcf}: set task.ext.prefix"
    """
    export OMP_NUM_THREADS=${task.cpus} NUMBA_NUM_THREADS=${task.cpus}

    caduceus score-vcf \\
        ${vcf} \\
        --ref ${fasta} \\
        ${model_arg} \\
        ${args} \\
        --quiet \\
        -o ${prefix}.vcf.gz
    """

    stub:
    def prefix = task.ext.prefix ?: "${meta.id}"
    """
    echo "" | gzip > ${prefix}.vcf.gz
    touch ${prefix}.vcf.gz.tbi
    """
}
