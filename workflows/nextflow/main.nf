#!/usr/bin/env nextflow
/*
 * Scatter / score / merge: every input VCF is scored in `--chunks` parts in parallel (one task per
 * part, each on a GPU when the `gpu` profile is on), then the parts are merged back into one
 * bgzipped, indexed VCF per input.
 *
 *   nextflow run workflows/nextflow -profile docker,gpu \
 *       --input 'calls/*.vcf.gz' --fasta hg38.fa --chunks 8 --outdir results
 *
 * Part i of n is `caduceus score-vcf VCF --ref FA --chunk i/n -o part_i.vcf.gz` (i = 1..n, set in
 * nextflow.config through the module's task.ext.args); the merge is `caduceus merge PART... -o OUT`.
 */

include { CADUCEUS_SCORE } from './modules/caduceus/score/main'

params.input  = null       // VCF, VCF.gz or BCF; a glob scores several files
params.fasta  = null       // reference FASTA (plain or bgzip); .fai / .gzi beside it are used when present
params.model  = null       // model directory; default: the model shipped inside caduceus
params.chunks = 4          // parts per VCF
params.outdir = 'results'

process CADUCEUS_MERGE {
    tag "${meta.id}"
    label 'process_low'

    conda "${moduleDir}/modules/caduceus/score/environment.yml"
    container 'caduceus:0.1.0'

    input:
    tuple val(meta), path(parts, stageAs: 'parts/*')

    output:
    tuple val(meta), path("${meta.id}.caduceus.vcf.gz"), path("${meta.id}.caduceus.vcf.gz.tbi"), emit: vcf
    tuple val("${task.process}"), val('caduceus'), eval("caduceus --version | sed 's/^caduceus //'"), topic: versions, emit: versions_caduceus

    script:
    """
    caduceus merge ${parts.join(' ')} -o ${meta.id}.caduceus.vcf.gz
    """

    stub:
    """
    echo "" | gzip > ${meta.id}.caduceus.vcf.gz
    touch ${meta.id}.caduceus.vcf.gz.tbi
    """
}

workflow {
    if (!params.input || !params.fasta) {
        error "Give --input VCF(s) and --fasta REFERENCE"
    }
    def n_chunks = params.chunks as int

    def ch_vcf = channel.fromPath(params.input, checkIfExists: true)
        .map { vcf -> [[id: vcf.name.replaceAll(/\.(vcf|bcf)(\.gz)?$/, '')], vcf] }

    def fasta = file(params.fasta, checkIfExists: true)
    def fasta_index = ["${params.fasta}.fai", "${params.fasta}.gzi"].collect { f -> file(f) }.findAll { f -> f.exists() }
    def ch_fasta = channel.value([[id: fasta.baseName], fasta, fasta_index])
    def model = params.model ? file(params.model, checkIfExists: true) : []

    // scatter: one task per (VCF, part); meta.id names the part's output
    def ch_parts_in = ch_vcf
        .combine(channel.of(1..n_chunks))
        .map { meta, vcf, i -> [meta + [id: "${meta.id}.part${i}", sample: meta.id, chunk: i, n_chunks: n_chunks], vcf] }

    CADUCEUS_SCORE(ch_parts_in, ch_fasta, model)

    // gather: the n parts of each VCF, in chunk order, as soon as the last one is done
    def ch_parts_out = CADUCEUS_SCORE.out.vcf
        .map { meta, vcf -> [groupKey(meta.sample, meta.n_chunks), [meta.chunk, vcf]] }
        .groupTuple()
        .map { sample, parts -> [[id: sample.toString()], parts.sort { p -> p[0] }.collect { p -> p[1] }] }

    CADUCEUS_MERGE(ch_parts_out)

    // software versions of every process, from the `versions` topic, as one YAML file
    channel.topic('versions')
        .map { proc, tool, version -> [proc.tokenize(':').last(), tool, version] }
        .unique()
        .groupTuple()
        .map { proc, tools, versions ->
            ["${proc}:"] + [tools, versions].transpose().collect { tv -> "    ${tv[0]}: ${tv[1]}" }
        }
        .map { lines -> lines.join('\n') }
        .collectFile(name: 'software_versions.yml', storeDir: "${params.outdir}/pipeline_info", newLine: true, sort: true)
}
