# The pretrained-model sweep (Matsuyama et al. 2023; issue 7): features of existing vision
# models, per-voxel layer x pool-kernel selection, ensembles, sample-size and parameter-size
# scaling. Models named by a path or hub id are params (a dry run needs no weights); models
# with `build` are tiny random models made here. Video datasets use the fMRI dataset of the
# study; image datasets (fmri.source algonauts2023) are read from fmri.root.
# When every subject of an image dataset has the release's test images
# (fmri.root/{subject}/test_split/test_images/*.png), each encode job also writes the
# challenge submission of its model and subject: {PRE_ROOT}/submission/{model}/{subject}/
# {lh,rh}_pred_test.npy (every vertex, float32, one row per test image in sorted order).


if PRE_MODELS:

    rule pretrained_build:
        # every tiny model in one job: one import of transformers
        output:
            [directory(pre_model_dir(n)) for n in PRE_BUILT],
        log:
            f"{LOGS}/pretrained/build.log",
        conda:
            "../envs/cortexscale.yaml"
        threads: 1
        resources:
            mem_mb=mem_mb(),
            runtime=runtime(0.5),
        params:
            cfg=sections("pretrained_models", "seed"),
            names=shell_words(*PRE_BUILT),
            out_dir=parent(0),
        shell:
            "cortexscale pretrained-build --sections {params.cfg} --name {params.names}"
            " --out-dir {params.out_dir} 2> {log}"

    rule pretrained_features:
        input:
            # the model's folder when the workflow builds it (a path or hub id is a param)
            model=lambda w: PLAN.pre_model_inputs(w.model),
            # order only: a video dataset's check passes first (an image dataset has none)
            fmri=PLAN.pre_fmri_inputs,
        output:
            f"{PRE_ROOT}/features/{{model}}.h5",
        log:
            f"{LOGS}/pretrained/features_{{model}}.log",
        wildcard_constraints:
            model=one_of(PRE_MODELS),
        conda:
            "../envs/cortexscale.yaml"
        threads: THREADS
        resources:
            mem_mb=mem_mb(4),
            runtime=runtime(),
            gpu=GPUS,
        params:
            cfg=sections("pretrained_models", "subjects"),
            source=lambda w: PLAN.pre_source_arg(w.model),
            stimuli=PLAN.pre_stimuli_arg,
            device=DEVICE,
        shell:
            "cortexscale pretrained-features --sections {params.cfg} --name {wildcards.model}"
            " --model {params.source} {params.stimuli} --out {output}"
            " --threads {threads} --device {params.device} 2> {log}"

    rule pretrained_encode:
        # one job per model x subject: every ROI's parcels are fit at once (parcels are
        # independent; the candidate designs are built once) and written per ROI
        input:
            features=f"{PRE_ROOT}/features/{{model}}.h5",
        output:
            expand(
                f"{PRE_ROOT}/encoding/{{{{model}}}}/{{{{subject}}}}/{{roi}}.{{ext}}",
                roi=ROIS,
                ext=["tsv", "json", "npz"],
            )
            + pre_submission_files(),
        log:
            f"{LOGS}/pretrained/encoding/{{model}}/{{subject}}.log",
        wildcard_constraints:
            model=one_of(PRE_MODELS),
        conda:
            "../envs/cortexscale.yaml"
        threads: THREADS
        resources:
            mem_mb=mem_mb(2),
            runtime=runtime(0.5),
        params:
            cfg=sections("encoding", "pretrained_models", "seed"),
            stimuli=PLAN.pre_stimuli_arg,
            rois=shell_words(*ROIS),
            out_dir=parent(0),
            submission=lambda w: PLAN.pre_submission_arg(w.model, w.subject),
        shell:
            "cortexscale pretrained-encode --sections {params.cfg} --name {wildcards.model}"
            " --features {input.features} --subject {wildcards.subject}"
            " --rois {params.rois} {params.stimuli} --out-dir {params.out_dir}"
            " {params.submission} --threads {threads} 2> {log}"

    rule pretrained_ensemble:
        # one job per ensemble (every subject x ROI): averaging predictions is cheap
        input:
            npz=lambda w: pre_ensemble_inputs(w.ensemble),
        output:
            expand(
                f"{PRE_ROOT}/ensembles/{{{{ensemble}}}}/{{subject}}/{{roi}}.{{ext}}",
                subject=SUBJECTS,
                roi=ROIS,
                ext=["tsv", "json", "npz"],
            ),
        log:
            f"{LOGS}/pretrained/ensemble_{{ensemble}}.log",
        wildcard_constraints:
            ensemble=one_of(PRE_ENSEMBLES),
        conda:
            "../envs/cortexscale.yaml"
        threads: 1
        resources:
            mem_mb=mem_mb(),
            runtime=runtime(0.5),
        params:
            members=lambda w: shell_words(*PRE_ENSEMBLES[w.ensemble]),
            subjects=shell_words(*SUBJECTS),
            rois=shell_words(*ROIS),
            # the folder of every model's predictions (MODEL/SUBJECT/ROI.npz under it)
            encoding_root=parent("npz", levels=3),
            out_dir=parent(0, levels=2),
        shell:
            "cortexscale pretrained-ensemble --name {wildcards.ensemble}"
            " --members {params.members} --subjects {params.subjects} --rois {params.rois}"
            " --encoding-root {params.encoding_root} --out-dir {params.out_dir} 2> {log}"

    rule pretrained_aggregate:
        input:
            encoding=pre_encoding_outputs("json"),
            features=expand(f"{PRE_ROOT}/features/{{model}}.h5", model=list(PRE_MODELS)),
        output:
            table=data_in_report(PRETRAINED_TABLES[0]),
            sample_size=data_in_report(PRETRAINED_TABLES[1]),
            fits=data_in_report(PRETRAINED_TABLES[2]),
            figure=in_report(PRETRAINED_TABLES[3]),
            # the tables' pages (cortexscale.report.html), shown in the report
            pages=[in_report(page_of(t)) for t in PRETRAINED_TABLES[:3]],
            copies=siblings(PRETRAINED_TABLES[:3], ".parquet")
            + siblings(PRETRAINED_TABLES[3:], ".svg"),
        log:
            f"{LOGS}/pretrained/aggregate.log",
        conda:
            "../envs/cortexscale.yaml"
        threads: 1
        resources:
            mem_mb=mem_mb(),
            runtime=runtime(0.5),
        params:
            cfg=sections("pretrained_models"),
        shell:
            "cortexscale pretrained-aggregate --sections {params.cfg}"
            " --encoding {input.encoding} --features {input.features}"
            " --out {output.table} --sample-size {output.sample_size}"
            " --fits {output.fits} --figure {output.figure} 2> {log}"
