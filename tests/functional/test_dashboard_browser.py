"""The dashboard in a real browser against the whole system (web, saga workers, one django-q2
cluster per service): a staff member signs in and watches orders happen without reloading, then
repairs a stuck saga with the retry button."""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from django.conf import settings

from lab import browser
from payments import testcards
from tests.functional.harness import (
    RunningSystem,
    postgres_database,
    running_system,
)

pytestmark = pytest.mark.processes

ARTIFACTS = Path(settings.BASE_DIR) / "var" / "artifacts"
README_IMAGE = Path(settings.BASE_DIR) / "docs" / "img" / "dashboard.png"
WAIT = 120  # generous: a saga runs out of charges, then of refunds (backoffs of 1-2 s), first


def require_browser() -> None:
    why = browser.missing()
    if why:
        if os.environ.get("REQUIRE_BROWSER") == "1":
            pytest.fail(f"REQUIRE_BROWSER=1 but no browser: {why}")
        pytest.skip(f"no browser: {why}")


@pytest.fixture(scope="module")
def system(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningSystem]:
    require_browser()
    tmp = tmp_path_factory.mktemp("dashboard")
    # Every refund fails: a payment that ran out of attempts cannot be undone, so its saga parks
    # as stuck after three tries. Backoffs of 1 and 2 s keep a resumed saga compensating for
    # about 3 s, many of the dashboard's reads (each shows a saga as it is then): with the
    # harness's 0.05 s its new round could start and end between two reads, unseen.
    faults = {
        "SAGA_FAULTS": "payments.refund:error:1",
        "SAGA_COMPENSATION_MAX_ATTEMPTS": "3",
        "SAGA_RETRY_INITIAL_SECONDS": "1",
        "SAGA_RETRY_MAX_SECONDS": "2",
    }
    with postgres_database() as databases, running_system(tmp, databases, **faults) as running:
        yield running


@pytest.fixture(scope="module")
def page(system: RunningSystem, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    driver = browser.chromium(tmp_path_factory.mktemp("chromium-profile"), height=1150)
    try:
        browser.sign_in(driver, system.system.url, "admin", "admin")
        yield driver
    finally:
        driver.quit()


def row_status(driver: Any, saga_id: str) -> str:
    return str(
        driver.execute_script(
            "const b = document.querySelector(`tr[data-saga='${arguments[0]}'] [data-field=status]`);"
            "return b ? b.textContent : '';",
            saga_id,
        )
    )


def wait_for_status(driver: Any, saga_id: str, status: str) -> None:
    from selenium.webdriver.support.ui import WebDriverWait

    WebDriverWait(driver, WAIT, poll_frequency=0.1).until(
        lambda d: row_status(d, saga_id) == status,
        f"saga {saga_id} never showed {status} (last: {row_status(driver, saga_id)!r})",
    )


def test_a_good_order_appears_and_completes_without_a_reload(
    system: RunningSystem, page: Any
) -> None:
    page.execute_script("window.loadedOnce = true")

    order = system.user.order()

    wait_for_status(page, order["saga_id"], "completed")
    assert page.execute_script("return window.loadedOnce") is True  # the same page, live
    assert page.execute_script("return window.dashboardStats.snapshots") == 1


def test_a_declined_order_shows_failed_with_its_reason(system: RunningSystem, page: Any) -> None:
    order = system.user.order(card=testcards.DECLINED)

    wait_for_status(page, order["saga_id"], "failed")
    reason = page.execute_script(
        "return document.querySelector(`tr[data-saga='${arguments[0]}'] [data-field=reason]`)"
        ".textContent",
        order["saga_id"],
    )
    assert reason == "payment_declined"


def test_a_stuck_saga_moves_when_the_operator_presses_retry(
    system: RunningSystem, page: Any
) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as ec
    from selenium.webdriver.support.ui import WebDriverWait

    order = system.user.order(card=testcards.PROCESSING_ERROR)
    saga_id = order["saga_id"]
    wait_for_status(page, saga_id, "stuck")
    # Every status the row shows from now on, however briefly.
    page.execute_script(
        """
        const badge = document.querySelector(`tr[data-saga='${arguments[0]}'] [data-field=status]`);
        window.statusesSeen = [];
        new MutationObserver(() => window.statusesSeen.push(badge.textContent))
          .observe(badge, {childList: true, characterData: true, subtree: true});
        """,
        saga_id,
    )
    row = page.find_element(By.CSS_SELECTOR, f"tr[data-saga='{saga_id}']")
    row.find_element(By.CSS_SELECTOR, "a.order").click()  # the timeline opens beside the list
    WebDriverWait(page, WAIT).until(
        ec.presence_of_element_located((By.CSS_SELECTOR, f"#detail [data-saga='{saga_id}']"))
    )

    page.find_element(By.CSS_SELECTOR, "#detail button.retry").click()

    WebDriverWait(page, WAIT).until(
        ec.text_to_be_present_in_element((By.ID, "action-result"), "Retry accepted")
    )
    WebDriverWait(page, WAIT, poll_frequency=0.1).until(
        lambda d: d.execute_script("return window.statusesSeen.includes('compensating')"),
        "the stuck saga did not move after retry",
    )
    WebDriverWait(page, WAIT).until(  # the timeline (refreshed live) marks the operator's retry
        ec.presence_of_element_located(
            (By.CSS_SELECTOR, "#detail .mark[title^='resumed by an operator']")
        )
    )
    wait_for_status(page, saga_id, "stuck")  # the refunds still fail: parked again

    # A little traffic for the picture: good orders, and one the carrier cannot serve.
    placed = [system.user.order() for _ in range(6)] + [system.user.order(country="AQ")]
    for order in placed:
        system.user.wait(order["order_id"])
    WebDriverWait(page, WAIT).until(
        ec.presence_of_element_located((By.CSS_SELECTOR, "#detail [data-status='stuck']"))
    )
    report = system.wait_quiet(timeout=WAIT)
    assert not report["unfinished"], report
    # The live counts reach what the database holds once the system is quiet.
    truth = dict(system.sql("SELECT status, count(*) FROM sagas_saga GROUP BY status"))
    assert truth.get("stuck", 0) >= 1 and truth.get("completed", 0) >= 7, truth
    for status in ("pending", "running", "compensating", "completed", "failed", "stuck"):
        count = str(truth.get(status, 0))
        WebDriverWait(page, WAIT).until(
            shows_count(status, count), f"the {status} count did not reach {count}"
        )
    save_screenshots(page)


def shows_count(status: str, count: str) -> Callable[[Any], bool]:
    from selenium.webdriver.common.by import By

    def shown(driver: Any) -> bool:
        return bool(driver.find_element(By.CSS_SELECTOR, f"[data-count='{status}']").text == count)

    return shown


def save_screenshots(page: Any) -> None:
    """The page as an operator sees it: a test artifact, and the README's picture."""
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    shot = ARTIFACTS / "dashboard.png"
    page.execute_script("window.scrollTo(0, 0); document.activeElement.blur()")
    page.save_screenshot(str(shot))
    README_IMAGE.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(shot, README_IMAGE)
