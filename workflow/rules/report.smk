# Where each output stands in `snakemake --report` (landing page: workflow/report/workflow.rst).
# Results are grouped by theme (category), figures and tables apart (subcategory), each with a
# title (its label) and a caption of its own (workflow/report/<caption>.rst). The tables and
# the summary are shown as the HTML pages their stages write beside them
# (cortexscale.report.html); the TSVs themselves are downloads under "Data files".

import os

# file name -> (category, subcategory, title, caption file stem)
REPORT_ITEMS = {
    "summary.html": ("Summary", "Findings", "Findings of the study", "summary"),
    "scaling_data_size.png": (
        "Scaling",
        "Figures",
        "Accuracy against pretraining data",
        "scaling_data_size",
    ),
    "scaling_params.png": (
        "Scaling",
        "Figures",
        "Accuracy against parameters",
        "scaling_params",
    ),
    "scaling_fits.png": (
        "Scaling",
        "Figures",
        "Scaling-law fits with bootstrap bands",
        "scaling_fits_figure",
    ),
    "frontier.png": ("Scaling", "Figures", "Accuracy against compute", "frontier"),
    "encoding.html": ("Scaling", "Tables", "Encoding accuracy of every run", "encoding_table"),
    "scaling_fits.html": ("Scaling", "Tables", "Scaling-law fits", "scaling_fits"),
    "frontier.html": ("Scaling", "Tables", "Compute frontier", "frontier_table"),
    "isoflop.png": (
        "Compute-optimal allocation",
        "Figures",
        "IsoFLOP profiles",
        "isoflop_figure",
    ),
    "allocation.png": (
        "Compute-optimal allocation",
        "Figures",
        "Optimal size and tokens against compute",
        "allocation_figure",
    ),
    "isoflop.html": (
        "Compute-optimal allocation",
        "Tables",
        "IsoFLOP profiles",
        "isoflop_table",
    ),
    "allocation.html": (
        "Compute-optimal allocation",
        "Tables",
        "Compute-optimal allocation",
        "allocation",
    ),
    "loss_curves.png": ("Training", "Figures", "Pretraining loss curves", "loss_curves"),
    "precision.png": (
        "Training",
        "Figures",
        "Precision: accuracy and wall time",
        "precision",
    ),
    "factors.png": ("Factors", "Figures", "Accuracy against each model factor", "factors"),
    "comparisons.html": ("Factors", "Tables", "Factor tests on run pairs", "comparisons"),
    "brain_map.png": ("Brain maps", "Figures", "Held-out r of every parcel", "brain_map"),
    "pretrained.png": (
        "Pretrained models",
        "Figures",
        "Accuracy against parameters and fMRI samples",
        "pretrained_figure",
    ),
    "pretrained.html": (
        "Pretrained models",
        "Tables",
        "Accuracy per model, subject and ROI",
        "pretrained",
    ),
    "pretrained_sample_size.html": (
        "Pretrained models",
        "Tables",
        "Accuracy against fMRI training samples",
        "pretrained_sample_size",
    ),
    "pretrained_fits.html": (
        "Pretrained models",
        "Tables",
        "Scaling fits of the pretrained models",
        "pretrained_fits",
    ),
}


def in_report(path):
    """``path`` flagged for the report under its theme, title and caption (REPORT_ITEMS)."""
    category, subcategory, title, caption = REPORT_ITEMS[os.path.basename(path)]
    return report(
        path,
        caption=f"../report/{caption}.rst",
        category=category,
        subcategory=subcategory,
        labels={"title": title},
    )


def page_of(path):
    """The HTML page a stage writes beside a table or the summary (cortexscale.report.html)."""
    return os.path.splitext(path)[0] + ".html"


def data_in_report(path):
    """A table (TSV) as a download under "Data files", captioned like its HTML page."""
    _, _, title, caption = REPORT_ITEMS[os.path.basename(page_of(path))]
    return report(
        path,
        caption=f"../report/{caption}.rst",
        category="Data files",
        subcategory="Tables (TSV)",
        labels={"title": title},
    )
