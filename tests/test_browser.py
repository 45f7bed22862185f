"""The MLflow UI, opened with scripts/ui.sh on a store we wrote, in headless Chromium (Debian's chromium-driver).

A short run and a two-trial sweep are trained into a temp store, and the run's model evaluated; the test
checks that the runs page lists them (the trials nested under their sweep), that a run's page shows its
test metric and its description, that the logged figures (attribution maps too) render as images, and
that the evaluation run's page shows its report. Screenshots go to the test's folder (and to $PIPELINE_SCREENSHOTS if set).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from mlflow import MlflowClient
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver
from selenium.webdriver.support.ui import WebDriverWait

from conftest import COMMAND_TIMEOUT_S, cli_env, free_port, pipeline_train, serving
from headless_browser import headless_chromium, wait_for_text
from pipeline.config import REPO_ROOT


@pytest.fixture
def browser(tmp_path: Path) -> Iterator[WebDriver]:
    driver = headless_chromium(tmp_path / "chromium-profile")
    try:
        yield driver
    finally:
        driver.quit()


def screenshot(driver: WebDriver, folder: Path, name: str) -> Path:
    path = folder / name
    driver.save_screenshot(str(path))
    if copies := os.environ.get("PIPELINE_SCREENSHOTS"):
        Path(copies).mkdir(parents=True, exist_ok=True)
        shutil.copy(path, Path(copies) / name)
    return path


def figure_images(driver: WebDriver) -> set[str]:
    """Sources of the images on the page that are at least 600 pixels wide."""
    return {
        i.get_attribute("src")
        for i in driver.find_elements(By.TAG_NAME, "img")
        if int(i.get_attribute("naturalWidth") or 0) >= 600
    }


def close_assistant_panel(driver: WebDriver) -> None:
    """MLflow 3.17 opens an 'Assistant' side panel by default; it hides half the page in a screenshot."""
    for button in driver.find_elements(By.CSS_SELECTOR, "button[aria-label='Close']"):
        if button.is_displayed():
            button.click()


@pytest.mark.slow
@pytest.mark.browser
def test_the_ui_shows_our_runs_metrics_and_figures(tmp_path: Path, output_root: Path, browser: WebDriver) -> None:
    out = output_root
    # the embedded digits (not the synthetic set), so the screenshots show real figures
    common = ["compression=none", f"paths.output_root={out}"]
    # its model is logged: pipeline-eval scores it below; two epochs draw a learning curve
    single_run = ["run_name=browser-check", "trainer.max_epochs=2", *common]
    sweep = ["-m", "model=cnn,mlp", "trainer.max_epochs=1", "tracking.log_model=false", *common]
    for arguments in (single_run, sweep):
        done = pipeline_train(*arguments, cwd=tmp_path)
        assert done.returncode == 0, done.stderr[-3000:]
    store = f"sqlite:///{out / 'mlflow.db'}"
    client = MlflowClient(store)
    experiment = client.get_experiment_by_name("digits").experiment_id
    (single,) = client.search_runs([experiment], "attributes.run_name = 'browser-check'")
    evaluated = subprocess.run(
        [sys.executable, "-m", "pipeline.cli.evaluate", single.info.run_id, f"paths.output_root={out}"],
        env=cli_env(),
        capture_output=True,
        text=True,
        timeout=COMMAND_TIMEOUT_S,
    )
    assert evaluated.returncode == 0, evaluated.stderr[-3000:]
    evaluation_id = evaluated.stdout.split("evaluation run ")[1].split()[0]
    runs = client.search_runs([experiment], "tags.evaluation_of IS NULL")
    (single,) = [run for run in runs if run.info.run_name == "browser-check"]
    (parent,) = [run for run in runs if run.data.tags.get("sweep.role") == "parent"]
    trials = [run for run in runs if run.data.tags.get("mlflow.parentRunId") == parent.info.run_id]

    port = free_port()
    url = f"http://127.0.0.1:{port}"
    ui = ["bash", str(REPO_ROOT / "scripts" / "ui.sh"), store]
    with serving(ui, f"{url}/health", tmp_path / "ui.log", env={**cli_env(), "PORT": str(port)}):
        browser.get(f"{url}/#/experiments/{experiment}/runs")
        wait_for_text(browser, "browser-check", parent.info.run_name)
        assert browser.title == f"Runs - Experiment {experiment} - MLflow"
        close_assistant_panel(browser)
        parent_row = browser.find_element(By.XPATH, f"//div[@role='row'][.//*[text()='{parent.info.run_name}']]")
        parent_row.find_element(By.CSS_SELECTOR, "button").click()  # unfold the sweep: its trials are nested under it
        wait_for_text(browser, *(trial.info.run_name for trial in trials))
        screenshot(browser, tmp_path, "runs.png")

        browser.get(f"{url}/#/experiments/{experiment}/runs/{single.info.run_id}")
        test_acc = single.data.metrics["test/acc"]
        text = wait_for_text(browser, "browser-check", "Metrics", "test/acc")
        assert browser.title == f"Run {single.info.run_id} - MLflow"
        assert f"test/acc\n{test_acc:g}" in text or f"test/acc\n{test_acc!r}" in text
        wait_for_text(browser, "Test accuracy", "95% interval", "figures/learning_curves")  # its description, rendered
        close_assistant_panel(browser)
        screenshot(browser, tmp_path, "run.png")

        browser.get(f"{url}/#/experiments/{experiment}/runs/{single.info.run_id}/artifacts/figures/learning_curves.png")
        shown: set[str] = set()
        for figure in ("learning_curves", "confusion_matrix", "misclassified"):
            wait_for_text(browser, f"{figure}.png")
            browser.find_element(By.XPATH, f"//*[text()='{figure}.png']").click()  # in the artifact tree
            wait_for_text(browser, f"figures/{figure}.png")
            # a new image decoded at the figure's logged size (the page's icons are far smaller)
            new_figure = WebDriverWait(browser, 60).until(lambda d, shown=shown: figure_images(d) - shown)
            shown |= new_figure
            close_assistant_panel(browser)
            screenshot(browser, tmp_path, f"figure-{figure}.png")

        browser.get("about:blank")  # a fresh page: the tree of the page before would keep `interpret` folded
        browser.get(f"{url}/#/experiments/{experiment}/runs/{single.info.run_id}/artifacts/interpret/maps.png")
        wait_for_text(browser, "maps.png")
        browser.find_element(By.XPATH, "//*[text()='maps.png']").click()  # in the artifact tree
        wait_for_text(browser, "interpret/maps.png")
        WebDriverWait(browser, 60).until(lambda d: figure_images(d) - shown)  # the attribution maps, decoded
        close_assistant_panel(browser)
        screenshot(browser, tmp_path, "figure-interpret-maps.png")

        browser.get(f"{url}/#/experiments/{experiment}/runs/{evaluation_id}")
        wait_for_text(browser, f"Evaluation of {single.info.run_id}", "95% interval", "macro F1")
        assert browser.title == f"Run {evaluation_id} - MLflow"
        close_assistant_panel(browser)
        screenshot(browser, tmp_path, "evaluation.png")
