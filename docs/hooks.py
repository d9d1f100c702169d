"""MkDocs hook: publish the repository files the documentation links to, without copying them into docs/.

The pages link to committed files by their path relative to the page, exactly as GitHub resolves
it: from ``docs/metrics.md`` the score-memory report is ``../reports/perf/score-memory.md``, and
from ``docs/methods/icd.md`` it is ``../../reports/perf/score-memory.md``. MkDocs resolves such a
link to the source path ``../reports/perf/score-memory.md`` (relative to ``docs/``), which no
documentation file has, and ``mkdocs build --strict`` would fail on it. This hook adds every file
under ``REPO_FOLDERS`` to the build under exactly that source path, published at its repository
path under ``repo/`` (``site/repo/reports/perf/score-memory/``); MkDocs then rewrites each link to
the published URL. Markdown files (the reports, the dataset cards) become pages, everything else
(figures, CSV, JSON, TOML) is copied as it is. The files are read from the checkout at build time:
nothing is downloaded, nothing is duplicated into ``docs/``.
"""

from __future__ import annotations

import os
from pathlib import Path

from mkdocs.config.defaults import MkDocsConfig
from mkdocs.exceptions import PluginError
from mkdocs.structure.files import File, Files, InclusionLevel

# Top-level folders of the repository whose files the pages may link to (data, never code).
REPO_FOLDERS = ("reports", "datasets", "training", "suites", "methods")
# Where they are published in the site: under a folder of their own, so that no repository path
# (datasets/README.md) can take the place of a documentation page (docs/datasets.md).
SITE_FOLDER = "repo"


def _repo_files(repo: Path, folder: str):
    """Regular files under ``repo/folder``, as repository-relative POSIX paths; symbolic links
    (``datasets/demo`` points into the package) and hidden or cache folders are left out."""
    for dirpath, dirnames, filenames in os.walk(repo / folder):  # does not follow symbolic links
        dirnames[:] = sorted(d for d in dirnames if not d.startswith((".", "__")))
        for name in sorted(filenames):
            path = Path(dirpath) / name
            if name.startswith(".") or path.is_symlink() or not path.is_file():
                continue
            yield path.relative_to(repo).as_posix()


def on_files(files: Files, config: MkDocsConfig) -> Files:
    docs_dir = Path(config.docs_dir).resolve()
    repo = Path(config.config_file_path).resolve().parent
    taken = {f.dest_uri for f in files}
    for folder in REPO_FOLDERS:
        for rel in _repo_files(repo, folder):
            src_uri = Path(os.path.relpath(repo / rel, docs_dir)).as_posix()  # "../reports/…"
            # where MkDocs would publish the file had it been docs/repo/<rel>
            dest_uri = File(f"{SITE_FOLDER}/{rel}", None, config.site_dir, config.use_directory_urls).dest_uri
            if dest_uri in taken:
                raise PluginError(
                    f"docs/hooks.py: {rel} would be published at {dest_uri}, which another file has"
                )
            taken.add(dest_uri)
            files.append(
                File(
                    src_uri,
                    str(docs_dir),
                    config.site_dir,
                    config.use_directory_urls,
                    dest_uri=dest_uri,
                    inclusion=InclusionLevel.NOT_IN_NAV,
                )
            )
    return files
