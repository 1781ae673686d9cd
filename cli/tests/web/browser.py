"""Ferry's web page in a real browser: Playwright for Python driving Debian's Chromium.

`cli/tests/web.rs` starts Ferry and its peers, then runs one scenario of this script with
what it needs in the environment (FERRY_URL, …). A scenario fails with an AssertionError
(the exit status is not 0); it writes screenshots to FERRY_WEB_ARTIFACTS.

    python3 cli/tests/web/browser.py SCENARIO
"""

import datetime
import hashlib
import os
import re
import shutil
import sys
import time
from pathlib import Path
from urllib.parse import parse_qs, urljoin, urlsplit

from playwright.sync_api import Page, expect, sync_playwright

URL = os.environ.get("FERRY_URL", "http://127.0.0.1:8080")
ARTIFACTS = Path(os.environ.get("FERRY_WEB_ARTIFACTS", "web-artifacts"))
PASSWORD = "correct horse battery"
LONG = 180_000  # ms


def env(name: str) -> str:
    value = os.environ.get(name)
    assert value, f"{name} is not set"
    return value


def launch(p):
    args = ["--no-sandbox", "--disable-dev-shm-usage"]
    rules = os.environ.get("FERRY_HOST_RULES")
    if rules:
        # Ferry's public name leads to the test server, as its DNS record would.
        args.append(f"--host-resolver-rules={rules}")
    return p.chromium.launch(
        executable_path=shutil.which("chromium") or shutil.which("chromium-browser"),
        args=args,
    )


def new_page(browser, **options) -> Page:
    context = browser.new_context(base_url=URL, accept_downloads=True, **options)
    page = context.new_page()
    page.set_default_timeout(30_000)
    # No page may ever run script it was sent as data, nor break its own CSP.
    page.errors = []
    page.confirmations = 0  # confirm() dialogs the scenario expects (and accepts)

    def dialog(d):
        if d.type == "confirm" and page.confirmations > 0:
            page.confirmations -= 1
            d.accept()
        else:
            page.errors.append(f"a dialog opened: {d.message}")
            d.dismiss()

    page.on("dialog", dialog)
    page.on("pageerror", lambda e: page.errors.append(str(e)))
    page.on(
        "console",
        lambda m: page.errors.append(m.text)
        if m.type == "error" and "Content Security Policy" in m.text
        else None,
    )
    return page


def shots(page: Page, name: str):
    """Screenshots of the current page: desktop and phone widths, light and dark."""
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    for width, height, device in ((1280, 800, "desktop"), (375, 812, "phone")):
        page.set_viewport_size({"width": width, "height": height})
        if device == "phone":
            wide = page.evaluate("document.documentElement.scrollWidth")
            assert wide <= width, f"{name} is {wide} px wide on a {width} px phone"
        for scheme in ("light", "dark"):
            page.emulate_media(color_scheme=scheme)
            page.screenshot(path=str(ARTIFACTS / f"{name}-{device}-{scheme}.png"), full_page=True)
    page.set_viewport_size({"width": 1280, "height": 800})
    page.emulate_media(color_scheme="light")


def sign_in(page: Page, name: str, password: str = PASSWORD):
    page.goto("/login")
    page.get_by_label("Name").fill(name)
    page.get_by_label("Password").fill(password)
    page.get_by_role("button", name="Sign in").click()
    expect(page).to_have_url(re.compile(r"/$"))


def setup_admin(page: Page):
    """The first admin, made on the setup page the start-up link opens."""
    page.goto(f"/setup#{env('FERRY_SETUP_LINK')}")
    page.get_by_label("Name").fill("root")
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Create the admin").click()
    expect(page).to_have_url(re.compile(r"/$"))
    expect(page.get_by_role("heading", name="Jobs")).to_be_visible()


def row_of(page: Page, name: str):
    return page.locator("#jobs-rows tr", has=page.get_by_role("link", name=name, exact=True))


def check_clean(page: Page):
    assert not page.errors, f"errors in the page: {page.errors}"


def scenario_magnet():
    """The first admin signs up on the setup page, adds a magnet from the aria2c seeder,
    watches its bar reach 100 % without a reload, finds the hostile file name shown as
    text, and downloads a file whose SHA-256 matches."""
    magnet, name = env("FERRY_MAGNET"), env("FERRY_TORRENT_NAME")
    xss, sha = env("FERRY_XSS_NAME"), env("FERRY_NOTES_SHA256")
    with sync_playwright() as p:
        browser = launch(p)
        page = new_page(browser)
        setup_admin(page)
        shots(page, "jobs-empty")

        page.get_by_role("link", name="Add", exact=True).click()
        page.get_by_label("One magnet link or http(s) URL per line").fill(magnet)
        page.get_by_role("button", name="Add", exact=True).click()
        expect(page).to_have_url(re.compile(r"/$"))

        # Live: the same document (no reload) sees the job reach 100 %.
        page.evaluate("window.ferryTestMark = 1")
        row = row_of(page, name)
        expect(row).to_have_count(1, timeout=LONG)
        expect(row.locator("[data-f=percent]")).to_have_text("100.0%", timeout=LONG)
        expect(row.locator("[data-f=status]")).to_have_text(re.compile("Completed|Seeding"), timeout=LONG)
        assert page.evaluate("window.ferryTestMark") == 1, "the page was reloaded"
        assert row.locator("progress").get_attribute("value") in ("100", "100.0")
        shots(page, "jobs")

        # The hostile name is text, on the page of the job.
        row.get_by_role("link", name=name, exact=True).click()
        expect(page.locator("td.path", has_text=xss)).to_have_count(1)
        assert page.locator("main img").count() == 0, "a file name became an element"
        shots(page, "job")

        # A download from the page matches the seeder's file.
        notes = page.locator("table.files tr", has=page.locator("td.path", has_text="notes.txt"))
        with page.expect_download() as download:
            notes.get_by_role("link", name="Download").click()
        got = hashlib.sha256(Path(download.value.path()).read_bytes()).hexdigest()
        assert got == sha, f"downloaded {got}, seeded {sha}"

        # The clip plays in the page (Range requests, same origin, under the CSP).
        clip = page.locator("table.files tr", has=page.locator("td.path", has_text="clip.webm"))
        clip.get_by_role("button", name="Play").click()
        video = page.locator("#player video")
        expect(video).to_have_count(1)
        # (Polled from here: the page's CSP forbids the eval a string predicate needs.)
        deadline = time.monotonic() + 30
        while not video.evaluate("v => v.readyState >= 2 && v.currentTime > 0.2"):
            assert time.monotonic() < deadline, video.evaluate(
                "v => ({state: v.readyState, at: v.currentTime, error: v.error && v.error.code})")
            time.sleep(0.1)

        # A signed link: copyable, and it works without the session.
        page.context.grant_permissions(["clipboard-read", "clipboard-write"])
        notes.get_by_role("button", name="Copy link").click()
        expect(notes.get_by_role("button", name="Link copied")).to_be_visible()
        link = page.evaluate("navigator.clipboard.readText()")
        assert "/api/v1/links/" in link, link
        anonymous = new_page(browser)
        body = anonymous.request.get(link).body()
        assert hashlib.sha256(body).hexdigest() == sha
        check_clean(page)
        browser.close()


def scenario_torrent():
    """A .torrent is analysed and its file tree shown; one file is unticked; the job
    downloads the others (cli/tests/web.rs checks what was stored)."""
    torrent, skip = env("FERRY_TORRENT_PATH"), env("FERRY_SKIP_FILE")
    with sync_playwright() as p:
        browser = launch(p)
        page = new_page(browser)
        sign_in(page, "alice")
        page.goto("/add")
        page.locator("#torrent-file").set_input_files(torrent)
        tree = page.locator("#tree")
        expect(tree.locator("input.file")).to_have_count(int(env("FERRY_FILE_COUNT")))
        shots(page, "add-tree")
        tree.locator("label", has_text=skip).locator("input").uncheck()
        expect(page.locator("#tree-all")).not_to_be_checked()
        page.get_by_role("button", name="Start").click()
        expect(page).to_have_url(re.compile(r"/jobs/[0-9a-f-]{36}$"))
        job = page.url.rsplit("/", 1)[1]
        print(f"JOB={job}", flush=True)
        expect(page.locator("#jobs-rows [data-f=status]")).to_have_text(re.compile("Completed|Seeding"), timeout=LONG)
        expect(page.locator("td.path", has_text=skip)).to_have_count(0)
        check_clean(page)
        browser.close()


def scenario_apart():
    """Bob never sees Alice's job; an admin disables Bob, whose open page lands on sign-in."""
    magnet = env("FERRY_LONELY_MAGNET")
    with sync_playwright() as p:
        browser = launch(p)
        alice = new_page(browser)
        sign_in(alice, "alice")
        alice.goto("/add")
        alice.get_by_label("One magnet link or http(s) URL per line").fill(magnet)
        alice.get_by_role("button", name="Add", exact=True).click()
        expect(alice).to_have_url(re.compile(r"/$"))
        link = alice.locator("#jobs-rows td.name a").first
        expect(link).to_be_visible()
        alices_job = link.get_attribute("href")

        bob = new_page(browser)
        sign_in(bob, "bob")
        expect(bob.locator("#jobs-rows tr.empty")).to_have_count(1)
        bob.goto(alices_job)
        expect(bob.get_by_role("heading", name="No such job")).to_be_visible()
        bob.goto("/")

        admin = new_page(browser)
        sign_in(admin, "root")
        admin.goto("/admin")
        shots(admin, "admin")
        bobs_row = admin.locator("tr[data-user]", has_text="bob")
        bobs_row.get_by_role("checkbox").check()
        bobs_row.get_by_role("button", name="Save").click()
        expect(bobs_row.get_by_role("status")).to_have_text("Saved.")
        # Bob's open page notices on its own (its live feed is ended and refused).
        expect(bob).to_have_url(re.compile(r"/login\?next="), timeout=30_000)
        # The audit log shows the disable today, and nothing on a day long past.
        today = datetime.datetime.now(datetime.timezone.utc).date().isoformat()
        admin.goto("/admin")
        admin.get_by_label("Action", exact=True).fill("admin.user.")
        admin.get_by_label("From", exact=True).fill(today)
        admin.get_by_label("To", exact=True).fill(today)
        admin.get_by_role("button", name="Filter").click()
        expect(admin).to_have_url(re.compile(r"from=" + today))
        expect(admin.locator("table.audit code", has_text="admin.user.disable")).to_have_count(1)
        admin.get_by_label("From", exact=True).fill("2001-01-01")
        admin.get_by_label("To", exact=True).fill("2001-01-02")
        admin.get_by_role("button", name="Filter").click()
        expect(admin.locator("table.audit tr.empty")).to_have_count(1)
        for page in (alice, bob, admin):
            check_clean(page)
        browser.close()


def scenario_storage_and_tokens():
    """Alice adds an S3 bucket through the form (its checks first), tests it, has a magnet
    delivered there; makes a token (shown once) and revokes it. cli/tests/web.rs checks the
    bucket and the token's death."""
    magnet, name = env("FERRY_MAGNET"), env("FERRY_TORRENT_NAME")
    with sync_playwright() as p:
        browser = launch(p)
        page = new_page(browser)
        sign_in(page, "alice")

        page.goto("/storage")
        form = page.locator("#s3-form")
        form.get_by_role("button", name="Add bucket").click()
        expect(form.locator(".field-error", has_text="Give the bucket a name")).to_be_visible()
        expect(form.get_by_label("Name")).to_have_attribute("aria-invalid", "true")
        form.get_by_label("Name").fill("alice's bucket")
        page.get_by_label("Endpoint URL").fill("not a url")
        page.get_by_label("Bucket").fill("B")
        form.get_by_role("button", name="Add bucket").click()
        expect(form.locator(".field-error", has_text="The endpoint is a URL")).to_be_visible()
        expect(form.locator(".field-error", has_text="Bucket names are")).to_be_visible()
        page.get_by_label("Endpoint URL").fill(env("FERRY_S3_ENDPOINT"))
        page.get_by_label("Bucket").fill(env("FERRY_S3_BUCKET"))
        page.get_by_label("Access key id").fill(env("FERRY_S3_ACCESS"))
        page.get_by_label("Secret access key").fill(env("FERRY_S3_SECRET"))
        form.get_by_role("button", name="Add bucket").click()
        row = page.locator("tr[data-profile]", has_text="alice's bucket")
        expect(row.or_(page.locator("#s3-error:not(:empty)"))).to_have_count(1)
        assert row.count() == 1, page.locator("#s3-error").text_content()
        row.get_by_role("button", name="Test").click()
        expect(row.get_by_role("status")).to_have_text("Works.", timeout=30_000)
        # The bucket becomes the default destination, kept across a reload.
        page.get_by_role("radio", name="alice's bucket").check()
        expect(page.locator("#default-status")).to_have_text("Saved.")
        page.reload()
        expect(page.get_by_role("radio", name="alice's bucket")).to_be_checked()
        shots(page, "storage")

        page.goto("/add")
        page.get_by_label("One magnet link or http(s) URL per line").fill(magnet)
        # Preselected: the default.
        expect(page.locator("#links-dest option:checked")).to_have_text("alice's bucket (s3)")
        page.locator("#add-links").get_by_label("Seed when finished").uncheck()
        page.get_by_role("button", name="Add", exact=True).click()
        expect(page).to_have_url(re.compile(r"/$"))
        expect(row_of(page, name).locator("[data-f=status]")).to_have_text("Completed", timeout=LONG)
        job = row_of(page, name).get_by_role("link").get_attribute("href").rsplit("/", 1)[1]
        print(f"JOB={job}", flush=True)

        page.goto("/account")
        page.get_by_label("Name", exact=True).fill("sonarr")
        page.locator("#token-form").get_by_label("write").check()
        page.get_by_role("button", name="Create token").click()
        secret = page.locator("#token-secret")
        expect(secret).to_have_text(re.compile(r"^ferry_pat_"))
        print(f"TOKEN={secret.text_content()}", flush=True)
        token_row = page.locator("#tokens tr", has_text="sonarr")
        expect(token_row).to_contain_text("read write")
        shots(page, "account")
        page.reload()
        expect(page.locator("#token-secret")).to_have_text("")  # shown once
        page.confirmations = 1
        page.locator("#tokens tr", has_text="sonarr").get_by_role("button", name="Revoke").click()
        expect(page.locator("#tokens tr", has_text="sonarr")).to_have_count(0)
        page.reload()
        expect(page.locator("#tokens tr", has_text="sonarr")).to_have_count(0)

        # Signed in on a second browser too: listed, and signed out from the first.
        other = new_page(browser)
        sign_in(other, "alice")
        page.reload()
        sessions = page.locator("#sessions tr")
        expect(sessions).to_have_count(2)
        expect(page.locator("#sessions tr", has_text="(this one)")).to_have_count(1)
        page.locator("#sessions tr:not(:has-text('(this one)'))").get_by_role("button", name="Sign out").click()
        expect(sessions).to_have_count(1)
        other.reload()
        expect(other).to_have_url(re.compile(r"/login\?next="))
        page.reload()
        expect(page.locator("#sessions tr")).to_have_count(1)
        check_clean(page)
        browser.close()


def scenario_oidc():
    """Sign in through the identity provider's own pages, and out again."""
    with sync_playwright() as p:
        browser = launch(p)
        page = new_page(browser)
        page.goto("/login")
        page.get_by_role("link", name="Sign in with idp").click()
        # The provider's login and consent pages (oidc-provider's interactions).
        page.locator("input[name=login]").fill(env("FERRY_IDP_USER"))
        page.locator("input[name=password]").fill("any")
        page.locator("button[type=submit]").click()
        page.locator("button[type=submit]").click()
        expect(page).to_have_url(re.compile(r"/$"))
        expect(page.locator(".who .user")).to_have_text(env("FERRY_IDP_NAME"))
        page.get_by_role("button", name="Sign out").click()
        expect(page).to_have_url(re.compile(r"/login"))
        page.goto("/")
        expect(page).to_have_url(re.compile(r"/login\?next=%2F"))
        check_clean(page)
        browser.close()


def scenario_share():
    """Alice adds a URL; once its job is finished, the job's page offers what Ferry packaged:
    the .torrent downloads (cli/tests/web.rs checks it against the magnet and the bytes), and
    the magnet is copied to the clipboard, or shown to copy by hand where the clipboard
    refuses."""
    url, name = env("FERRY_SHARE_URL"), env("FERRY_SHARE_NAME")
    with sync_playwright() as p:
        browser = launch(p)
        page = new_page(browser)
        sign_in(page, "alice")
        page.goto("/add")
        page.get_by_label("One magnet link or http(s) URL per line").fill(url)
        page.get_by_role("button", name="Add", exact=True).click()
        expect(page).to_have_url(re.compile(r"/$"))
        row = row_of(page, name)
        expect(row.locator("[data-f=status]")).to_have_text(re.compile("Completed|Seeding"), timeout=LONG)
        row.get_by_role("link", name=name, exact=True).click()
        expect(page).to_have_url(re.compile(r"/jobs/[0-9a-f-]{36}$"))
        print(f"JOB={page.url.rsplit('/', 1)[1]}", flush=True)

        share = page.locator("section", has=page.get_by_role("heading", name="Share as a torrent"))
        expect(share).to_be_visible()
        shots(page, "job-share")
        link = share.get_by_role("link", name="Download the .torrent")
        with page.expect_download() as download:
            link.click()
        assert download.value.suggested_filename == f"{name}.torrent", download.value.suggested_filename
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        saved = ARTIFACTS / f"{name}.torrent"
        download.value.save_as(saved)
        print(f"TORRENT={saved}", flush=True)

        page.context.grant_permissions(["clipboard-read", "clipboard-write"])
        share.get_by_role("button", name="Copy the magnet link").click()
        expect(share.get_by_role("button", name="Magnet copied")).to_be_visible()
        magnet = page.evaluate("navigator.clipboard.readText()")
        assert magnet.startswith("magnet:?xt=urn:btih:"), magnet
        print(f"MAGNET={magnet}", flush=True)
        expect(share.locator("#share-error")).to_be_empty()
        check_clean(page)

        # Where the clipboard refuses, the magnet is put in a field, selected, to copy by hand.
        refused = new_page(browser)
        refused.add_init_script(
            "navigator.clipboard.writeText = () => Promise.reject(new DOMException('no', 'NotAllowedError'))")
        sign_in(refused, "alice")
        refused.goto(page.url)
        button = refused.get_by_role("button", name="Copy the magnet link")
        button.click()
        field = refused.get_by_role("textbox", name="Link to copy")
        expect(field).to_have_value(magnet)
        expect(field).to_be_focused()
        assert field.evaluate("f => f.readOnly && f.selectionStart === 0 && f.selectionEnd === f.value.length")
        expect(button).to_have_text("Copy the magnet link")
        check_clean(refused)
        browser.close()


CALLBACK = "/api/v1/storage-profiles/google-drive/callback"


def scenario_folder():
    """Alice adds a folder on the shared volume from the storage page: a path out of her
    area is refused with the server's reason; `tv` is added, shows where it is on the
    volume (FERRY_FOLDER) and passes its test."""
    with sync_playwright() as p:
        browser = launch(p)
        page = new_page(browser)
        sign_in(page, "alice")
        page.goto("/storage")
        form = page.locator("#folder-form")
        form.get_by_label("Name").fill("TV")
        form.get_by_label("Folder, inside your area").fill("../bob")
        form.get_by_role("button", name="Add folder").click()
        expect(page.locator("#folder-error")).to_contain_text("relative to your area")
        form.get_by_label("Folder, inside your area").fill("tv")
        form.get_by_role("button", name="Add folder").click()
        row = page.locator("tr[data-profile]", has_text="TV")
        expect(row).to_have_count(1)
        expect(row).to_contain_text("folder")
        expect(row).to_contain_text(env("FERRY_FOLDER"))
        row.get_by_role("button", name="Test").click()
        expect(row.get_by_role("status")).to_have_text("Works.", timeout=30_000)
        shots(page, "storage-folder")
        check_clean(page)
        browser.close()


def connect_drive(page: Page, name: str):
    """On the storage page, asks to connect the Drive folder FERRY_DRIVE_FOLDER as `name`:
    the browser goes to Google's consent page and is sent back to Ferry's callback, whose
    answer this returns."""
    page.goto("/storage")
    form = page.locator("#drive-form")
    form.get_by_label("Name", exact=True).fill(name)
    form.get_by_label("Folder id").fill(env("FERRY_DRIVE_FOLDER"))
    with page.expect_request(lambda r: r.url.startswith(URL + CALLBACK), timeout=30_000) as back:
        form.get_by_role("button", name="Connect Google Drive").click()
    # The browser went there through Google's page, for Ferry's client and callback.
    google = back.value.redirected_from
    assert google and google.url.startswith(env("FERRY_GOOGLE_AUTH")), google and google.url
    asked = parse_qs(urlsplit(google.url).query)
    assert asked["redirect_uri"] == [URL + CALLBACK], asked
    assert asked["client_id"] == [env("FERRY_GOOGLE_CLIENT")], asked
    return back.value.response()


def scenario_drive_connect():
    """Alice connects a Google Drive folder from her storage page: Google's consent (the fake
    agrees at once) sends her back to Ferry, the folder is among her storage, and it works.
    Ferry is at its public name (FERRY_URL), which FERRY_HOST_RULES leads to the server."""
    with sync_playwright() as p:
        browser = launch(p)
        page = new_page(browser)
        sign_in(page, "alice")
        page.goto("/storage")
        expect(page.locator("tr[data-profile]")).to_have_count(0)
        shots(page, "storage-drive-form")
        answer = connect_drive(page, "Alice's Drive")
        assert answer.status in (302, 303), f"{answer.status} {answer.text()}"
        # Back on her storage page, which says so.
        landed = urljoin(URL, answer.headers["location"])
        assert urlsplit(landed).path == "/storage", landed
        page.wait_for_url(landed)
        page.wait_for_load_state()
        expect(page.get_by_role("status").filter(has_text="Google Drive is connected.")).to_have_count(1)
        # The pending connection's cookie is gone.
        held = [c["name"] for c in page.context.cookies()]
        assert "ferry_drive_connect" not in held, held

        row = page.locator("tr[data-profile]", has_text="Alice's Drive")
        expect(row).to_have_count(1)
        expect(row).to_contain_text("google_drive")
        expect(row).to_contain_text("folder " + env("FERRY_DRIVE_FOLDER"))
        row.get_by_role("button", name="Test").click()
        expect(row.get_by_role("status")).to_have_text("Works.", timeout=30_000)
        shots(page, "storage-drive")
        check_clean(page)
        browser.close()


def scenario_drive_declined():
    """Alice declines on Google's page: she is told Drive was not connected, and her storage
    page lists nothing new."""
    with sync_playwright() as p:
        browser = launch(p)
        page = new_page(browser)
        sign_in(page, "alice")
        answer = connect_drive(page, "Declined Drive")
        assert answer.status in (302, 303), f"{answer.status} {answer.text()}"
        # Back on the storage page, told in words (never raw JSON), nothing added.
        page.wait_for_url(re.compile(r"/storage\?drive=drive_consent_denied$"))
        page.wait_for_load_state()
        expect(page.get_by_role("alert").filter(has_text="access was declined")).to_have_count(1)
        assert "{" not in page.locator("main").inner_text()
        held = [c["name"] for c in page.context.cookies()]
        assert "ferry_drive_connect" not in held, held
        shots(page, "storage-drive-declined")
        expect(page.locator("tr[data-profile]")).to_have_count(0)
        check_clean(page)
        browser.close()


AXE = Path(__file__).parent / "node_modules" / "axe-core" / "axe.min.js"


def axe(page: Page, name: str):
    """axe-core's serious and critical violations on the current page (none allowed)."""
    page.add_script_tag(path=str(AXE))
    result = page.evaluate("axe.run(document, {resultTypes: ['violations']})")
    bad = [
        f"{v['id']} ({v['impact']}): {v['help']} — {[n['target'] for n in v['nodes']][:3]}"
        for v in result["violations"]
        if v["impact"] in ("serious", "critical")
    ]
    assert not bad, f"accessibility of {name}: {bad}"


def scenario_a11y():
    """Every page, signed out and in, light and dark: no serious or critical axe-core
    violations, usable from the keyboard (focus is visible), and screenshots of each."""
    assert AXE.is_file(), f"{AXE} is missing (scripts/test-deps.sh installs it)"
    magnet = env("FERRY_LONELY_MAGNET")
    with sync_playwright() as p:
        browser = launch(p)
        # axe is injected as a script, which the pages' CSP forbids: this context alone
        # bypasses it (the other scenarios run under the CSP and fail on any violation).
        page = new_page(browser, bypass_csp=True)
        for path, name in (("/login", "login"), ("/setup#x", "setup")):
            page.goto(path)
            for scheme in ("light", "dark"):
                page.emulate_media(color_scheme=scheme)
                axe(page, f"{name} ({scheme})")
            shots(page, name)
        sign_in(page, "root")
        page.goto("/add")
        page.get_by_label("One magnet link or http(s) URL per line").fill(magnet)
        page.get_by_role("button", name="Add", exact=True).click()
        expect(page).to_have_url(re.compile(r"/$"))
        job = page.locator("#jobs-rows td.name a").first.get_attribute("href")
        for path, name in (("/", "jobs"), ("/add", "add"), (job, "job"), ("/account", "account"),
                           ("/storage", "storage"), ("/admin", "admin")):
            page.goto(path)
            for scheme in ("light", "dark"):
                page.emulate_media(color_scheme=scheme)
                axe(page, f"{name} ({scheme})")
            shots(page, name)
        # The keyboard reaches the first control, and its focus shows.
        page.goto("/")
        page.keyboard.press("Tab")
        focused = page.evaluate("getComputedStyle(document.activeElement).outlineStyle")
        assert focused != "none", "focus is not visible"
        check_clean(page)
        browser.close()


if __name__ == "__main__":
    scenario = sys.argv[1] if len(sys.argv) > 1 else ""
    run = globals().get(f"scenario_{scenario}")
    assert run, f"no scenario {scenario!r}"
    started = time.monotonic()
    run()
    print(f"{scenario}: passed in {time.monotonic() - started:.1f} s", flush=True)
