"""The study's report: the summary and table pages (cortexscale.report.html), the landing page
and the captions as Snakemake renders them, and the built report opened in headless Chromium."""

from __future__ import annotations

import ast
import json
import os
import re
import shutil
import subprocess
import tempfile
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from wfutils import REPO, results_of, run_snakemake

from cortexscale.report.html import (
    markdown_to_html,
    page_path,
    table_html,
    write_summary_html,
    write_table_html,
)

REPORT_DIR = REPO / "workflow" / "report"


class _Text(HTMLParser):
    """Visible text and element names of an HTML document (script and style left out)."""

    def __init__(self) -> None:
        super().__init__()
        self.text: list[str] = []
        self.tags: list[str] = []
        self._skip = 0

    def handle_starttag(self, tag, attrs):
        self.tags.append(tag)
        self._skip += tag in ("script", "style")

    def handle_endtag(self, tag):
        self._skip -= tag in ("script", "style")

    def handle_data(self, data):
        if not self._skip:
            self.text.append(data)


def visible(html_text: str) -> tuple[str, list[str]]:
    parser = _Text()
    parser.feed(html_text)
    return " ".join("".join(parser.text).split()), parser.tags


def squash(text: str) -> str:
    return " ".join(text.split())


# -- the summary page ------------------------------------------------------------------------


def test_markdown_subset_headings_bullets_paragraphs():
    md = ("# Findings of x\n\nintro line one\nline two\n\n## Scaling\n\n- first `a<b>` item\n"
          "  - nested **bold** item\n  - nested two\n- second & last\n\n### Sub\ntext after\n")
    out = markdown_to_html(md)
    assert "<h1>Findings of x</h1>" in out and "<h2>Scaling</h2>" in out
    assert "<h3>Sub</h3>" in out
    assert "<p>intro line one line two</p>" in out and "<p>text after</p>" in out
    assert "<code>a&lt;b&gt;</code>" in out and "<strong>bold</strong>" in out
    assert "second &amp; last" in out
    # nesting: the nested list sits inside the first item, the second item after it
    flat = out.replace("\n", "")
    assert ("<ul><li>first <code>a&lt;b&gt;</code> item<ul><li>nested <strong>bold</strong> item"
            "</li><li>nested two</li></ul></li><li>second &amp; last</li></ul>") in flat
    text, tags = visible(out)
    assert tags.count("ul") == 2 and tags.count("li") == 4


def test_markdown_escapes_everything_else():
    out = markdown_to_html("<script>alert(1)</script>\n- a <b> & `x`\n")
    assert "<script>" not in out and "&lt;script&gt;" in out and "&lt;b&gt;" in out


def test_summary_page_is_written_atomically_beside_the_markdown(tmp_path):
    md = tmp_path / "summary.md"
    md.write_text("# Findings of tiny\n\n- r rose by +0.02 (95% CI -0.1 to +0.3).\n")
    out = write_summary_html(md)
    assert out == tmp_path / "summary.html" == page_path(md)
    page = out.read_text()
    assert page.startswith("<!DOCTYPE html>") and "<title>Findings of tiny</title>" in page
    assert "<li>r rose by +0.02 (95% CI -0.1 to +0.3).</li>" in page
    assert sorted(p.name for p in tmp_path.iterdir()) == ["summary.html", "summary.md"]
    with pytest.raises(FileNotFoundError, match="missing.md"):
        write_summary_html(tmp_path / "missing.md")


# -- the table pages -------------------------------------------------------------------------


def test_table_page_rows_numbers_and_escaping(tmp_path):
    df = pd.DataFrame({"grid": ["d128<h8>", "d256"], "mean_r": [0.123456, np.nan],
                       "n_params": [123456789, 5]})
    tsv = tmp_path / "scaling_fits.tsv"
    df.to_csv(tsv, sep="\t", index=False)
    out = write_table_html(tsv)
    assert out == tmp_path / "scaling_fits.html"
    text, tags = visible(out.read_text())
    assert "Scaling-law fits" in text  # the title of the stem
    assert "2 row(s) x 3 column(s), from scaling_fits.tsv" in text
    assert "d128<h8>" in text and "0.1235" in text and "NA" in text and "123456789" in text
    assert "<h8>" not in out.read_text()  # escaped, not an element
    assert tags.count("tr") == 3 and tags.count("th") == 3


def test_table_page_says_when_rows_are_left_out():
    df = pd.DataFrame({"x": range(10)})
    text, tags = visible(table_html(df, "t", "t.tsv", max_rows=4))
    assert "10 row(s)" in text and "the first 4 rows are shown here, the file holds all 10" in text
    assert tags.count("tr") == 5
    with pytest.raises(ValueError, match="max_rows"):
        table_html(df, "t", "t.tsv", max_rows=0)


def test_table_page_of_an_empty_or_missing_table(tmp_path):
    (tmp_path / "empty.tsv").write_text("")
    text, _ = visible(write_table_html(tmp_path / "empty.tsv").read_text())
    assert "0 row(s) x 0 column(s)" in text and "no columns" in text
    (tmp_path / "header.tsv").write_text("a\tb\n")
    text, tags = visible(write_table_html(tmp_path / "header.tsv").read_text())
    assert "0 row(s) x 2 column(s)" in text and tags.count("th") == 2
    with pytest.raises(FileNotFoundError, match="nothere.tsv"):
        write_table_html(tmp_path / "nothere.tsv")


# -- report items, captions and the landing page as Snakemake renders them -------------------


def report_items() -> dict[str, tuple[str, str, str, str]]:
    """REPORT_ITEMS of workflow/rules/report.smk (a literal dict)."""
    tree = ast.parse((REPO / "workflow" / "rules" / "report.smk").read_text().split("\ndef ")[0])
    for node in tree.body:
        if isinstance(node, ast.Assign) and node.targets[0].id == "REPORT_ITEMS":
            return ast.literal_eval(node.value)
    raise AssertionError("REPORT_ITEMS not found in report.smk")


def rst_html(text: str) -> str:
    """reStructuredText to HTML as Snakemake's report does (docutils publish_parts)."""
    from docutils.core import publish_parts

    return publish_parts(text, writer_name="html", settings_overrides={
        "report_level": 1, "halt_level": 5})["html_body"]


def test_every_report_item_has_its_own_caption_and_every_caption_is_used():
    items = report_items()
    captions = {c for *_, c in items.values()}
    files = {p.stem for p in REPORT_DIR.glob("*.rst")} - {"workflow"}
    assert captions == files, (captions ^ files)
    figures = [c for name, (*_, c) in items.items() if name.endswith(".png")]
    assert len(figures) == len(set(figures)), "two figures share a caption"
    for stem in files:
        html_text = rst_html((REPORT_DIR / f"{stem}.rst").read_text())
        assert "system-message" not in html_text, (stem, html_text)
    for name, (category, subcategory, title, _) in items.items():
        assert subcategory == ("Figures" if name.endswith(".png") else
                               "Findings" if name == "summary.html" else "Tables"), name
        assert category and title


def render_landing(config: dict, category_names: list[str]) -> str:
    """The landing page as Snakemake renders it: Jinja (its Environment settings) with
    ``snakemake.config`` and ``categories``, then docutils."""
    from jinja2 import Environment
    from snakemake.report import Category

    class Snakemake:
        pass

    Snakemake.config = config
    categories = {Category(n): {} for n in category_names}
    template = (REPORT_DIR / "workflow.rst").read_text()
    env = Environment(trim_blocks=True, lstrip_blocks=True)
    return rst_html(env.from_string(template).render(snakemake=Snakemake, categories=categories,
                                                      files=[]))


@pytest.mark.parametrize("study", ["config/config.yaml", "config/studies/ahmadi2024.yaml",
                                   "config/studies/matsuyama2023.yaml"])
def test_landing_page_says_what_each_shipped_study_is(study):
    from cortexscale.config import load_study

    cfg = load_study(REPO / study, None)
    cats = sorted({c for c, *_ in report_items().values()} | {"Data files"})
    html_text = render_landing(cfg, cats)
    assert "system-message" not in html_text, html_text
    text, _ = visible(html_text)
    assert f"cortexscale study {cfg['study']}" in text
    assert all(s in text for s in cfg["subjects"]) and all(r in text for r in cfg["rois"])
    assert f"{len(cfg['subjects'])} subject(s)" in text
    pre = cfg["pretrained_models"]
    assert ("VideoGPT arm:" in text) == (not pre["only"])
    assert ("Pretrained-model arm:" in text) == bool(pre["models"])
    assert all(m["name"] in text for m in pre["models"])
    planted = (not pre["only"] and cfg["reference"]["enabled"]
               and cfg["fmri"]["source"] == "synthetic")
    assert ("Planted-reference arm:" in text) == planted
    if not pre["only"]:
        design = {"isoflop": "IsoFLOP design", "one_at_a_time": "One factor at a time",
                  "product": "Full factorial design"}[cfg["grid"]["mode"]]
        assert design in text and f"{len(cfg['grid']['seeds'])} pretraining seed(s)" in text
    for cat in cats:  # every theme the report has, named
        assert f"{cat}: " in text


# -- the built report in a real browser ------------------------------------------------------

CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
                  "--no-first-run", "--disable-background-networking",
                  "--disable-component-update", "--disable-sync", "--mute-audio"]


@pytest.fixture(scope="session")
def chromium() -> str:
    """Debian's chromium, installed with apt-get when missing and running as root."""
    found = shutil.which("chromium")
    if found:
        return found
    if os.geteuid() != 0 or shutil.which("apt-get") is None:
        pytest.skip("needs Debian's chromium: not installed, and installing it needs root and "
                    "apt-get (apt-get install chromium)")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    for cmd in (["apt-get", "update", "-qq"],
                ["apt-get", "install", "-y", "-qq", "--no-install-recommends", "chromium"]):
        proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300)
        assert proc.returncode == 0, f"{' '.join(cmd)} failed:\n{proc.stdout[-2000:]}" \
                                     f"{proc.stderr[-2000:]}"
    found = shutil.which("chromium")
    assert found, "apt-get installed chromium but no `chromium` is on PATH"
    return found


def dump_dom(chromium: str, page: Path, budget_ms: int = 60000) -> str:
    """The DOM of ``page`` after its scripts ran (virtual time), as headless Chromium has it."""
    with tempfile.TemporaryDirectory() as profile:
        proc = subprocess.run(
            [chromium, *CHROMIUM_FLAGS, f"--user-data-dir={profile}",
             f"--virtual-time-budget={budget_ms}", "--dump-dom", page.resolve().as_uri()],
            capture_output=True, text=True, timeout=180)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc.stdout


# Appended to a copy of the report: walks the app as a reader does (every category and
# subcategory, each result's description, its eye button), shows each figure and page, and
# writes what was on screen into <pre id="probe">.
DRIVER = r"""
<script>
(async function () {
  const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
  const screen = () => document.querySelector("#app").textContent;
  const probe = {landing: "", results: {}, errors: [], done: false};
  const pre = document.createElement("pre");
  pre.id = "probe";
  const write = () => { pre.textContent = JSON.stringify(probe); };
  document.body.appendChild(pre);
  try {
    for (let i = 0; i < 200 && (typeof app === "undefined" || !screen()); i++) await sleep(50);
    await sleep(200);
    probe.landing = screen();
    for (const cat of Object.keys(categories)) {
      for (const sub of Object.keys(categories[cat])) {
        app.showCategory(cat); await sleep(50);
        app.setView({navbarMode: "subcategory", category: cat, subcategory: sub});
        await sleep(100);
        const listing = screen();
        for (const path of categories[cat][sub]) {
          const entry = results[path];
          app.showResultInfo(path); await sleep(100);
          const item = {category: cat, subcategory: sub, name: entry.name, listing: listing,
                        mime: entry.mime_type, info: screen(), clicked: false};
          // the eye button beside the result's title (downloads, e.g. TSVs, are not clicked)
          const viewable = entry.mime_type.startsWith("image/") || entry.mime_type === "text/html";
          const title = entry.labels ? entry.labels.title : path;
          const span = [...document.querySelectorAll("#app span")].find(
            (s) => s.textContent === title && s.parentElement.querySelector("a"));
          if (span && viewable) {
            span.parentElement.querySelector("a").click();
            item.clicked = true;
          }
          await sleep(100);
          if (entry.mime_type.startsWith("image/")) {
            let img = null;
            for (let i = 0; i < 100; i++) {
              img = document.querySelector("#app img[src='" + entry.data_uri + "']");
              if (img && img.complete) break;
              await sleep(50);
            }
            item.shown = !!img;
            item.width = img ? img.naturalWidth : 0;
            // what the browser drew: the share of opaque, non-white pixels (a truncated or
            // corrupt image draws nothing, whatever its header says of its size)
            item.inked = 0;
            if (img && img.naturalWidth) {
              const scale = Math.min(1, 400 / img.naturalWidth);
              const canvas = document.createElement("canvas");
              canvas.width = Math.max(1, Math.round(img.naturalWidth * scale));
              canvas.height = Math.max(1, Math.round(img.naturalHeight * scale));
              const ctx = canvas.getContext("2d");
              try {
                ctx.drawImage(img, 0, 0, canvas.width, canvas.height);
                const px = ctx.getImageData(0, 0, canvas.width, canvas.height).data;
                let inked = 0;
                for (let i = 0; i < px.length; i += 4) {
                  if (px[i + 3] > 200 && (px[i] < 200 || px[i + 1] < 200 || px[i + 2] < 200)) {
                    inked += 1;
                  }
                }
                item.inked = inked / (px.length / 4);
              } catch (e) { item.error = String(e); }
            }
          } else if (entry.mime_type === "text/html") {
            const frame = document.querySelector("#app iframe");
            item.shown = !!frame && frame.src === entry.data_uri;
            if (item.shown) {
              const text = await (await fetch(frame.src)).text();
              item.page = new DOMParser().parseFromString(text, "text/html").body.textContent;
            }
          }
          probe.results[path] = item;
          write();  // what was seen so far, should a later step hang
        }
      }
    }
    probe.done = true;
  } catch (e) { probe.errors.push(String(e) + "\n" + e.stack); }
  write();
})();
</script>
"""


def caption_text(stem: str) -> str:
    """The first 80 characters of a caption as a reader sees them (markup removed)."""
    text = (REPORT_DIR / f"{stem}.rst").read_text()
    return squash(text.replace("**", "").replace("``", ""))[:80]


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_report_in_headless_chromium(tiny_study, tmp_path, chromium):
    """Build the report of the session's tiny study (in a copy of its work dir), open it in
    headless Chromium and find, on screen: the landing page's account of the study, the
    summary page's text, and every figure (decoded, with its own caption) and table page."""
    work = tmp_path / "work"
    shutil.copytree(tiny_study, work, symlinks=True)
    cfg = yaml.safe_load((work / "tiny.yaml").read_text())
    results = results_of(work)
    out = work / "report.html"
    proc = run_snakemake(work, "--configfile", str(work / "tiny.yaml"), "--report", str(out))
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]

    driven = tmp_path / "driven.html"
    html_text = out.read_text(encoding="utf-8")
    head, tag, tail = html_text.rpartition("</body>")  # the last one: scripts hold others
    assert tag and "<script" not in tail, tail[:500]
    driven.write_text(head + DRIVER + tag + tail, encoding="utf-8")
    dom = dump_dom(chromium, driven)
    match = re.search(r'<pre id="probe">(.*?)</pre>', dom, re.S)
    assert match, "the driver wrote no probe: the report's app did not run\n" + dom[-2000:]
    import html as html_mod

    probe = json.loads(html_mod.unescape(match.group(1)))
    assert not probe["errors"], probe["errors"]
    assert probe["done"], f"the driver stopped after {len(probe['results'])} result(s)"

    # the landing page, rendered by the app (not only present in a script)
    landing = squash(probe["landing"])
    for expected in (f"cortexscale study {cfg['study']}", "One factor at a time",
                     "Planted-reference arm:", "Pretrained-model arm:", "How to read this report",
                     *cfg["subjects"], *cfg["rois"]):
        assert expected in landing, (expected, landing[:3000])

    by_name = {item["name"]: item for item in probe["results"].values()}
    items = report_items()
    # every figure the study drew is in the report, decoded by the browser, under its theme,
    # with its own caption on screen
    figures = sorted(p.name for p in (results / "figures").glob("*.png"))
    assert figures and set(figures) <= set(items), figures
    shown = sorted(n for n, i in by_name.items() if i["mime"] == "image/png")
    assert shown == figures
    for name in figures:
        item = by_name[name]
        category, subcategory, title, caption = items[name]
        assert (item["category"], item["subcategory"]) == (category, subcategory), name
        assert item["clicked"] and item["shown"] and item["width"] > 100, name
        # drawn: axes, lines and text ink at least 1% of the figure
        assert item["inked"] > 0.01, (name, {k: v for k, v in item.items()
                                             if k not in ("info", "listing")})
        assert title in squash(item["listing"]), name
        assert caption_text(caption) in squash(item["info"]), (name, item["info"][:2000])

    # the summary as a page: every heading and item of summary.md on screen
    summary = by_name["summary.html"]
    assert summary["category"] == "Summary" and summary["clicked"] and summary["shown"]
    page = squash(summary["page"])
    md = (results / "summary.md").read_text()
    lines = [squash(re.sub(r"^\s*(#+|-)\s+", "", line).replace("`", ""))
             for line in md.splitlines() if line.strip()]
    assert len(lines) > 5
    for line in lines:
        assert line in page, (line, page[:3000])

    # every table with a TSV has its page in the report, showing its columns
    pages = sorted(n for n in items if n.endswith(".html") and n != "summary.html"
                   and (results / "tables" / n).with_suffix(".tsv").is_file())
    assert set(pages) >= {"encoding.html", "scaling_fits.html", "pretrained.html"}
    for name in pages:
        item = by_name[name]
        assert item["clicked"] and item["shown"], name
        columns = pd.read_csv((results / "tables" / name).with_suffix(".tsv"), sep="\t",
                              nrows=1).columns
        text = squash(item["page"])
        assert items[name][2] in squash(item["listing"])
        assert all(str(c) in text for c in columns), (name, text[:500])
        assert caption_text(items[name][3]) in squash(item["info"]), name
    # and its TSV as a download
    tsvs = {n for n, i in by_name.items() if i["category"] == "Data files"}
    assert {Path(n).with_suffix(".tsv").name for n in pages} <= tsvs
