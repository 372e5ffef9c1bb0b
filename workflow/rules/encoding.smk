# Stage 5: cross-validated ridge per grid point x subject, every ROI in one job (the features
# and the subject's runs are read by one process; each ROI's tables are written on their own).


rule encode:
    input:
        features=f"{RESULTS}/features/{{grid}}.h5",
        # order only: the dataset's check passes before any fit (the dataset is --fmri-root)
        fmri=FMRI_MARKER,
    output:
        tables=expand(f"{RESULTS}/encoding/{{{{grid}}}}/{{{{subject}}}}/{{roi}}.tsv", roi=ROIS),
        sidecars=expand(f"{RESULTS}/encoding/{{{{grid}}}}/{{{{subject}}}}/{{roi}}.json", roi=ROIS),
    log:
        f"{LOGS}/encoding/{{grid}}/{{subject}}.log",
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
        rois=shell_words(*ROIS),
    shell:
        "cortexscale encode --sections {params.cfg} --grid {wildcards.grid}"
        " --subject {wildcards.subject} --roi {params.rois}"
        " --features {input.features} --fmri-root {params.fmri_root}"
        " --out {output.tables} --threads {threads} 2> {log}"
