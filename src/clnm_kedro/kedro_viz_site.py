"""kedro-viz as a user sees it: build the static site, serve it locally, render it in Chromium.

Used by the test that checks the pipeline graph in the real tool and by
``make viz-screenshot`` (``python -m clnm_kedro.kedro_viz_site``), which regenerates the
README's picture of the pipeline. Nothing leaves the machine: the site is served on
127.0.0.1 and Chromium resolves no other host (kedro-viz's page asks for web fonts, which it
then does without).
"""

from __future__ import annotations

import argparse
import functools
import logging
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import urlencode

logger = logging.getLogger(__name__)

CHROMIUM_NAMES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")
# Without a virtual-time budget headless Chromium dumps the page before kedro-viz has laid
# out the graph (the graph is then blank).
VIRTUAL_TIME_BUDGET_MS = 15_000
# A page on the site's own origin that stores kedro-viz's settings in the browser, then opens
# the graph: no feature tour or minimap over the picture, the chosen theme.
_PREPARE_PAGE = "clnm_prepare_view.html"
_PREPARE_HTML = """<!DOCTYPE html>
<html><head><meta charset="utf-8"><title>Opening kedro-viz</title></head><body><script>
var stored = JSON.parse(window.localStorage.getItem("KedroViz") || "{{}}");
stored.showFeatureHints = false;
stored.theme = "{theme}";
stored.visible = Object.assign(
  {{graph: true, sidebar: true, slicing: true}}, stored.visible || {{}}, {{miniMap: false}}
);
window.localStorage.setItem("KedroViz", JSON.stringify(stored));
window.location.replace("./?" + window.location.search.substring(1));
</script></body></html>
"""


class KedroVizSiteError(RuntimeError):
    """The site could not be built or rendered; the message says what to do."""


def find_chromium() -> str | None:
    """The path of a Chromium (or Chrome) executable on ``PATH``, or ``None``."""
    for name in CHROMIUM_NAMES:
        path = shutil.which(name)
        if path:
            return path
    return None


def build_site(project: Path, timeout_s: float = 600.0, include_previews: bool = True) -> Path:
    """Run ``kedro viz build`` in ``project``; return the folder of the static site.

    With ``include_previews`` the site carries the previews of every dataset that exists
    (tables, figures, the crops), as ``kedro viz run`` shows them.
    """
    command = [sys.executable, "-m", "kedro", "viz", "build"]
    if include_previews:
        command.append("--include-previews")
    environment = {**os.environ, "KEDRO_DISABLE_TELEMETRY": "true", "MPLBACKEND": "Agg"}
    logger.info("Building the kedro-viz site of '%s'.", project)
    result = subprocess.run(
        command,
        cwd=project,
        env=environment,
        capture_output=True,
        text=True,
        timeout=timeout_s,
        check=False,
    )
    site = Path(project) / "build"
    if result.returncode != 0 or not (site / "api" / "main").is_file():
        raise KedroVizSiteError(
            f"`kedro viz build` failed in '{project}' (exit code {result.returncode}):\n"
            f"{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
        )
    return site


# kedro-viz lays the graph out in a web worker. Headless Chromium's virtual clock does not wait
# for workers: once the page's own tasks are done it runs the clock out and dumps the page, so on
# a slow or busy machine the dump shows the loading spinner instead of the graph. Virtual time
# stands still while a request is pending, so the served ``index.html`` carries a script that
# keeps one slow request to this server open at a time until the graph is drawn (or for at most
# ``_LAYOUT_WAIT_S`` real seconds). It changes nothing on the page.
_WAIT_PATH = "/__clnm_wait_for_layout"
_WAIT_STEP_S = 0.25
_LAYOUT_WAIT_S = 120.0
_WAIT_SCRIPT = f"""<script>
(function waitForLayout(steps) {{
  var drawn = document.querySelector(".pipeline-node")
    && !document.querySelector(".pipeline-loading-icon--visible");
  if (drawn || steps <= 0) return;
  fetch("{_WAIT_PATH}", {{cache: "no-store"}})
    .then(function () {{ waitForLayout(steps - 1); }}, function () {{}});
}})({int(_LAYOUT_WAIT_S / _WAIT_STEP_S)});
</script>"""


class _QuietHandler(SimpleHTTPRequestHandler):
    """Serves the site without a log line per request; see ``_WAIT_SCRIPT`` for the rest."""

    def log_message(self, format: str, *args: object) -> None:
        logger.debug("kedro-viz site: " + format, *args)

    def do_GET(self) -> None:
        path = self.path.split("?", 1)[0]
        if path == _WAIT_PATH:
            time.sleep(_WAIT_STEP_S)
            self._send(b"", "text/plain")
        elif path in ("/", "/index.html"):
            page = (Path(self.directory) / "index.html").read_text(encoding="utf-8")
            page = page.replace("</body>", _WAIT_SCRIPT + "</body>", 1)
            self._send(page.encode("utf-8"), "text/html; charset=utf-8")
        else:
            super().do_GET()

    def _send(self, body: bytes, content_type: str) -> None:
        self.send_response(200)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        self.end_headers()
        self.wfile.write(body)


@contextmanager
def serve(site: Path) -> Iterator[str]:
    """Serve ``site`` on 127.0.0.1 on a free port in a background thread; yield its URL."""
    site = Path(site)
    (site / _PREPARE_PAGE).write_text(_PREPARE_HTML.format(theme="light"), encoding="utf-8")
    handler = functools.partial(_QuietHandler, directory=str(site))
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, name="kedro-viz-site", daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)


def graph_url(
    base_url: str, pipeline: str = "__default__", expand_all: bool = True, theme: str = "light"
) -> str:
    """The URL that opens ``pipeline``'s graph (every namespace expanded, no feature tour)."""
    query = {"pid": pipeline}
    if expand_all:
        query["expandAllPipelines"] = "true"
    page = _PREPARE_PAGE if theme == "light" else ""
    return f"{base_url}{page}?{urlencode(query)}"


def _chromium(
    chromium: str,
    arguments: Sequence[str],
    url: str,
    timeout_s: float,
) -> subprocess.CompletedProcess[str]:
    with tempfile.TemporaryDirectory(prefix="clnm-chromium-") as profile:
        command = [
            chromium,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-dev-shm-usage",
            "--disable-background-networking",
            "--no-first-run",
            "--hide-scrollbars",
            # Only the local server is reachable: nothing is fetched from the internet.
            "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1",
            f"--user-data-dir={profile}",
            f"--virtual-time-budget={VIRTUAL_TIME_BUDGET_MS}",
            *arguments,
            url,
        ]
        return subprocess.run(
            command, capture_output=True, text=True, timeout=timeout_s, check=False
        )


def render_dom(url: str, chromium: str | None = None, timeout_s: float = 180.0) -> str:
    """The page at ``url`` as headless Chromium renders it (the DOM after the scripts ran)."""
    chromium = chromium or find_chromium()
    if chromium is None:
        raise KedroVizSiteError("No Chromium found: install it (Debian: apt-get install chromium).")
    result = _chromium(chromium, ["--dump-dom"], url, timeout_s)
    if result.returncode != 0 or not result.stdout.strip():
        raise KedroVizSiteError(
            f"Chromium could not render {url} (exit code {result.returncode}): "
            f"{result.stderr[-2000:]}"
        )
    return result.stdout


def take_screenshot(
    url: str,
    output: Path,
    window_size: tuple[int, int] = (2400, 1500),
    chromium: str | None = None,
    timeout_s: float = 180.0,
) -> Path:
    """Save a PNG of the page at ``url`` as headless Chromium draws it."""
    chromium = chromium or find_chromium()
    if chromium is None:
        raise KedroVizSiteError("No Chromium found: install it (Debian: apt-get install chromium).")
    output = Path(output).resolve()
    output.parent.mkdir(parents=True, exist_ok=True)
    width, height = window_size
    result = _chromium(
        chromium, [f"--screenshot={output}", f"--window-size={width},{height}"], url, timeout_s
    )
    if result.returncode != 0 or not output.is_file():
        raise KedroVizSiteError(
            f"Chromium could not take a screenshot of {url} (exit code {result.returncode}): "
            f"{result.stderr[-2000:]}"
        )
    return output


def main(argv: Sequence[str] | None = None) -> None:
    """``python -m clnm_kedro.kedro_viz_site``: the README's screenshot of the pipeline."""
    parser = argparse.ArgumentParser(description=main.__doc__)
    parser.add_argument("--project", type=Path, default=Path.cwd(), help="Kedro project folder")
    parser.add_argument("--pipeline", default="demo", help="pipeline to show (default: demo)")
    parser.add_argument(
        "--collapsed",
        action="store_true",
        help="show namespaces (dl_dual, clinical, ...) collapsed into one box each",
    )
    parser.add_argument("--output", type=Path, default=Path("docs/images/kedro_viz_pipeline.png"))
    parser.add_argument("--width", type=int, default=2400)
    parser.add_argument("--height", type=int, default=1500)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    site = build_site(args.project, include_previews=False)
    with serve(site) as base_url:
        url = graph_url(base_url, args.pipeline, expand_all=not args.collapsed)
        path = take_screenshot(url, args.output, (args.width, args.height))
    logger.info("Screenshot of the '%s' pipeline written to %s.", args.pipeline, path)


if __name__ == "__main__":
    main()
