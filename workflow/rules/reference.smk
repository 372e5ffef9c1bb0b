# Reference features of the synthetic world (config `reference`): the planted scaling law,
# the true latents and random features. They are written where the VideoGPT features go,
# so the `encode` rule scores them unchanged; the summary stands in for a pretraining one.


# a reference name also fits the `grid` wildcard of the `features` rule: this rule makes it
ruleorder: reference_features > features


rule reference_features:
    input:
        # order only: the dataset's check passes first
        fmri=FMRI_MARKER,
        runs=FMRI_RUNS,
    output:
        features=f"{RESULTS}/features/{{grid}}.h5",
        summary=f"{RESULTS}/reference/{{grid}}/summary.json",
    log:
        f"{LOGS}/reference/{{grid}}.log",
    wildcard_constraints:
        grid=REFERENCE_REGEX,
    conda:
        "../envs/cortexscale.yaml"
    threads: 1
    resources:
        mem_mb=mem_mb(),
        runtime=runtime(0.5),
    params:
        cfg=sections("fmri", "corpus", "seed", "reference"),
        fmri_root=parent("runs"),
    shell:
        "cortexscale reference-features --sections {params.cfg} --name {wildcards.grid}"
        " --fmri-root {params.fmri_root} --out {output.features} --summary {output.summary}"
        " 2> {log}"
