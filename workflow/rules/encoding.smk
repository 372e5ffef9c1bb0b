# Stage 5: cross-validated ridge per grid point x subject x ROI.


rule encode:
    input:
        features=f"{RESULTS}/features/{{grid}}.h5",
        fmri=FMRI_MARKER,
    output:
        table=f"{RESULTS}/encoding/{{grid}}/{{subject}}/{{roi}}.tsv",
        sidecar=f"{RESULTS}/encoding/{{grid}}/{{subject}}/{{roi}}.json",
    log:
        f"{LOGS}/encoding/{{grid}}/{{subject}}/{{roi}}.log",
    # many small jobs: the Slurm profile packs `group-components` of them into one submission
    group:
        "encode"
    conda:
        "../envs/cortexscale.yaml"
    threads: THREADS
    resources:
        mem_mb=mem_mb(),
        runtime=runtime(0.5),
    params:
        cfg=sections("encoding"),
        fmri_root=FMRI_ROOT_ARG,
    shell:
        "cortexscale encode --sections {params.cfg} --grid {wildcards.grid}"
        " --subject {wildcards.subject} --roi {wildcards.roi}"
        " --features {input.features} --fmri-root {params.fmri_root}"
        " --out {output.table} --threads {threads} 2> {log}"
