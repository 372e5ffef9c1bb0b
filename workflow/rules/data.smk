# Stage 1: the pretraining corpus and the fMRI dataset.


rule corpus:
    output:
        CORPUS,
    log:
        f"{LOGS}/corpus.log",
    conda:
        "../envs/cortexscale.yaml"
    threads: 1
    resources:
        mem_mb=mem_mb(),
        runtime=runtime(),
    params:
        # only what the corpus depends on (not all of grid and pretrain: a new seed, budget
        # or learning rate must not rebuild the corpus and everything after it)
        cfg=PLAN.corpus_sections,
        # the nested subsets: the grid's data sizes (none: an isoflop grid uses the pool)
        sizes=shell_words(*PLAN.corpus_sizes),
    shell:
        "cortexscale corpus --sections {params.cfg} --data-sizes {params.sizes} --out {output}"
        " 2> {log}"


# Real datasets in another layout are converted once into the internal layout under
# results/, so every later stage reads one format.
if IMPORTED_FMRI:

    rule fmri_import:
        # fmri.root is a parameter, not an input (it lies outside results/): a dry run
        # works before the data is mounted; a missing folder fails this job by name.
        output:
            runs=FMRI_RUNS,
            subjects=expand(f"{FMRI_ROOT}/{{subject}}.h5", subject=SUBJECTS),
            # algonauts2025: each subject's atlas from the release (for the brain maps)
            atlas=ATLAS,
        log:
            f"{LOGS}/fmri_import.log",
        conda:
            "../envs/cortexscale.yaml"
        threads: 1
        resources:
            mem_mb=mem_mb(2),
            runtime=runtime(),
        params:
            cfg=sections("fmri", "subjects"),
            out_dir=parent("runs"),
        shell:
            "cortexscale fmri-import --sections {params.cfg} --out-dir {params.out_dir} 2> {log}"


if SYNTHETIC_FMRI:

    rule fmri_synthetic:
        output:
            runs=FMRI_RUNS,
            atlas=ATLAS,
            subjects=expand(f"{FMRI_ROOT}/{{subject}}.h5", subject=SUBJECTS),
            # the rest of the dataset, declared so that a failed job leaves none of it
            parcels=f"{FMRI_ROOT}/parcels.tsv",
            stimuli=directory(f"{FMRI_ROOT}/stimuli"),
            truth=expand(f"{FMRI_ROOT}/truth/{{subject}}.h5", subject=SUBJECTS),
        log:
            f"{LOGS}/fmri.log",
        conda:
            "../envs/cortexscale.yaml"
        threads: 1
        resources:
            mem_mb=mem_mb(),
            runtime=runtime(),
        params:
            cfg=sections("fmri", "corpus", "subjects", "rois", "seed"),
            out_dir=parent("runs"),
        shell:
            "cortexscale fmri --sections {params.cfg} --out-dir {params.out_dir} 2> {log}"


rule fmri_check:
    # Reads every run of the dataset once and checks shapes, TR counts and NaNs, so that
    # a broken dataset stops the study before any model is trained. A user's own
    # (prepared) dataset is a parameter, not an input: its folder lies outside results/.
    input:
        runs=PLAN.fmri_check_inputs,
    output:
        FMRI_MARKER,
    log:
        f"{LOGS}/fmri_check.log",
    conda:
        "../envs/cortexscale.yaml"
    threads: 1
    resources:
        mem_mb=mem_mb(),
        runtime=runtime(0.5),
    params:
        cfg=sections("subjects", "rois"),
        fmri_root=PLAN.fmri_check_root,
    shell:
        "cortexscale fmri-check --sections {params.cfg} --fmri-root {params.fmri_root}"
        " --out {output} 2> {log}"
