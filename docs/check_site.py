"""Open the built documentation in headless Chromium and check what a reader sees.

Fails (exit status 1, one line per problem) unless

- every public name of the package (the ``__all__`` lists, see ``api_names.py``) has an
  API page whose heading names it and whose signature is shown, and every public method
  and property of a class is shown on the class's page;
- every tutorial page shows its title and as many loaded images as the notebook has
  image outputs.

Saves screenshots of the start page and of the first tutorial. Pages are served over
HTTP on localhost, as a reader's browser gets them, and the browser has no other network.

    python docs/check_site.py docs/_build/html [--screenshots DIR]

Needs Debian's ``chromium`` and ``chromium-driver`` (or ``--chromium`` / ``--chromedriver``)
and the ``docs`` extra (selenium).
"""

import argparse
import functools
import http.server
import json
import sys
import tempfile
import threading
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from api_names import public_methods, sections  # noqa: E402

IMAGE_MIMES = ("image/png", "image/jpeg", "image/svg+xml", "image/gif")


def serve(root):
    """An HTTP server for ``root`` on a free localhost port, in a daemon thread."""
    handler = functools.partial(_QuietHandler, directory=str(root))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, f"http://127.0.0.1:{server.server_address[1]}"


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):  # one line per request would bury the check's output
        pass


def browser(chromium, chromedriver, profile):
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    # --no-sandbox: CI runs as root, where Chromium's sandbox refuses to start. The
    # background-networking flags stop Chromium's own calls home, which a machine
    # without internet refuses (slowly, many at a time).
    for flag in ("--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                 "--disable-quic", "--no-first-run", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--window-size=1280,1000",
                 f"--user-data-dir={profile}"):
        options.add_argument(flag)
    # An explicit driver path: selenium then does not try to download one.
    driver = webdriver.Chrome(service=Service(executable_path=chromedriver), options=options)
    driver.set_page_load_timeout(60)
    return driver


def open_page(driver, url):
    driver.get(url)
    # Wait until the page and its images have finished loading (or failed to).
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if driver.execute_script(
                "return document.readyState === 'complete' && "
                "Array.from(document.images).every(i => i.complete)"):
            return
        time.sleep(0.1)


def heading(driver):
    return driver.execute_script(
        "const h = document.querySelector('article h1, main h1, h1');"
        "return h ? h.innerText : ''")


def signature(driver, anchor):
    """The visible text of the signature ``<dt id=anchor>``, or ``None``."""
    return driver.execute_script(
        "const dt = document.getElementById(arguments[0]);"
        "if (!dt) return null;"
        "const r = dt.getBoundingClientRect();"
        "return r.width > 0 && r.height > 0 ? dt.innerText : null", anchor)


def check_api(driver, base, build):
    problems, pages = [], 0
    for module, _, members in sections():
        for name, kind in members:
            full = f"{module}.{name}"
            page = build / "api" / "generated" / f"{full}.html"
            if not page.is_file():
                problems.append(f"{full}: no API page ({page.relative_to(build)})")
                continue
            open_page(driver, f"{base}/api/generated/{full}.html")
            pages += 1
            if full not in heading(driver):
                problems.append(f"{full}: heading is {heading(driver)!r}")
            sig = signature(driver, full)
            if sig is None or name not in sig:
                problems.append(f"{full}: no visible signature")
            elif kind == "function" and "(" not in sig:
                problems.append(f"{full}: signature without parameters: {sig!r}")
            if kind == "class":
                obj = getattr(sys.modules[module], name)
                for member in public_methods(obj):
                    if signature(driver, f"{full}.{member}") is None:
                        problems.append(f"{full}.{member}: not shown on the class page")
    return problems, pages


def notebook_images(path):
    """How many image outputs the committed notebook holds."""
    nb = json.loads(path.read_text())
    return sum(1 for cell in nb["cells"] if cell["cell_type"] == "code"
               for out in cell.get("outputs", [])
               if any(m in out.get("data", {}) for m in IMAGE_MIMES))


def check_tutorials(driver, base, build, tutorials):
    problems, shown = [], {}
    notebooks = sorted(tutorials.glob("*.ipynb"))
    if not notebooks:
        problems.append(f"no notebooks in {tutorials}")
    for nb in notebooks:
        url = f"{base}/tutorials/{nb.stem}.html"
        if not (build / "tutorials" / f"{nb.stem}.html").is_file():
            problems.append(f"{nb.name}: no page")
            continue
        open_page(driver, url)
        if not heading(driver):
            problems.append(f"{nb.name}: page has no heading")
        expected = notebook_images(nb)
        loaded, broken = driver.execute_script(
            "const imgs = Array.from(document.querySelectorAll('article img, main img'));"
            "const ok = imgs.filter(i => i.complete && i.naturalWidth > 0"
            "                            && i.getBoundingClientRect().width > 0);"
            "return [ok.length, imgs.filter(i => !ok.includes(i)).map(i => i.src)]")
        shown[nb.name] = (loaded, expected)
        if loaded < expected or broken:
            problems.append(f"{nb.name}: {loaded} of {expected} images shown; not shown: {broken}")
    return problems, shown


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("build", type=Path, help="the HTML build folder (docs/_build/html)")
    parser.add_argument("--screenshots", type=Path, default=None,
                        help="folder for the screenshots (default: BUILD/../screenshots)")
    parser.add_argument("--tutorials", type=Path, default=HERE.parent / "tutorials")
    parser.add_argument("--chromium", default="/usr/bin/chromium")
    parser.add_argument("--chromedriver", default="/usr/bin/chromedriver")
    args = parser.parse_args(argv)
    build = args.build.resolve()
    shots = (args.screenshots or build.parent / "screenshots").resolve()
    shots.mkdir(parents=True, exist_ok=True)

    start = time.monotonic()
    server, base = serve(build)
    with tempfile.TemporaryDirectory() as profile:
        driver = browser(args.chromium, args.chromedriver, profile)
        try:
            print(f"{driver.capabilities.get('browserVersion', '?')} headless, pages from {base}")
            api_problems, pages = check_api(driver, base, build)
            tutorial_problems, shown = check_tutorials(driver, base, build, args.tutorials)

            open_page(driver, f"{base}/index.html")
            driver.save_screenshot(str(shots / "start_page.png"))
            first = sorted(args.tutorials.glob("*.ipynb"))[:1]
            for nb in first:
                open_page(driver, f"{base}/tutorials/{nb.stem}.html")
                # Scroll to the first figure so that the screenshot shows one ('instant':
                # the theme scrolls smoothly, and the screenshot would catch it midway).
                driver.execute_script(
                    "const img = document.querySelector('article img, main img');"
                    "if (img) img.scrollIntoView({block: 'center', behavior: 'instant'})")
                driver.save_screenshot(str(shots / f"tutorial_{nb.stem}.png"))
        finally:
            driver.quit()
            server.shutdown()

    for name, (loaded, expected) in shown.items():
        print(f"  {name}: {loaded} images shown, {expected} in the notebook")
    problems = api_problems + tutorial_problems
    print(f"{pages} API pages, {len(shown)} tutorials checked in {time.monotonic() - start:.1f} s; "
          f"screenshots in {shots}")
    for problem in problems:
        print(f"FAIL {problem}")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
