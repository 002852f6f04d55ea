"""The documentation site: `mkdocs build --strict` passes (CI runs it through this test), a
broken link, a missing anchor or a page left out of the nav fails it, and the reference pages
follow the code they are generated from (a changed field description shows in the next build)."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from corpusmill.docs_reference import reference_pages, spec_fields
from corpusmill.jobs.cli import build_parser
from corpusmill.jobs.training.train_spec import TrainSpec
from corpusmill.pipelines.registry import all_tasks
from corpusmill.spec import JobSpec

REPO = Path(__file__).resolve().parents[2]


def mkdocs_build(config: Path, site: Path) -> subprocess.CompletedProcess:
    """`mkdocs build --strict` as a person (or CI) runs it, in a child process."""
    env = {**os.environ, "NO_MKDOCS_2_WARNING": "1"}
    return subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "--config-file",
                           str(config), "--site-dir", str(site)],
                          cwd=config.parent, env=env, capture_output=True, text=True,
                          timeout=300)


def test_site_builds_strict_with_generated_reference(tmp_path):
    built = mkdocs_build(REPO / "mkdocs.yml", tmp_path / "site")
    assert built.returncode == 0, built.stderr
    job_spec = (tmp_path / "site" / "reference" / "job-spec" / "index.html").read_text()
    assert "batching.max_tokens" in job_spec and "resources.concurrency.max" in job_spec
    api = (tmp_path / "site" / "reference" / "python-api" / "index.html").read_text()
    assert "Run a job as" in api          # corpusmill.api.run's docstring, by mkdocstrings
    for page in reference_pages():        # generated at build time, never committed
        assert not (REPO / "docs" / page).exists(), page


@pytest.fixture(scope="module")
def site_template(tmp_path_factory) -> Path:
    """The site's config and pages copied to a scratch folder, checked to build there (the hook
    and the code it reads stay in the repository; mkdocstrings is left out, it plays no part in
    link checks)."""
    root = tmp_path_factory.mktemp("site-copy")
    shutil.copytree(REPO / "docs", root / "docs", ignore=shutil.ignore_patterns("hooks"))
    config = yaml.safe_load((REPO / "mkdocs.yml").read_text())
    config["hooks"] = [str(REPO / "docs" / "hooks" / "reference.py")]
    config["plugins"] = ["search"]
    (root / "mkdocs.yml").write_text(yaml.safe_dump(config, sort_keys=False))
    built = mkdocs_build(root / "mkdocs.yml", root / "site")
    assert built.returncode == 0, built.stderr
    return root


@pytest.mark.parametrize("breakage, message", [
    ("link", "guides/nowhere.md"),
    ("anchor", "no-such-heading"),
    ("orphan", "extra.md"),
])
def test_strict_build_fails_on_broken_links_and_pages_missing_from_nav(site_template, tmp_path,
                                                                       breakage, message):
    site = tmp_path / "copy"
    shutil.copytree(site_template, site, ignore=shutil.ignore_patterns("site"))
    index = site / "docs" / "index.md"
    if breakage == "link":
        index.write_text(index.read_text() + "\nSee [nowhere](guides/nowhere.md).\n")
    elif breakage == "anchor":
        index.write_text(index.read_text() + "\nSee [jobs](guides/jobs.md#no-such-heading).\n")
    else:
        (site / "docs" / "extra.md").write_text("# A page nobody put in the nav\n")
    built = mkdocs_build(site / "mkdocs.yml", site / "site")
    assert built.returncode != 0
    assert message in built.stderr


def test_reference_changes_when_a_field_description_changes(monkeypatch, tmp_path):
    """Change a spec field's description in the code and the built page says the new text."""
    before = reference_pages()["reference/job-spec.md"]
    old = JobSpec.model_fields["on_error"].description
    assert " ".join(old.split()) in before
    new = "What happens to a row that fails: a sentence written for this test."
    monkeypatch.setattr(JobSpec.model_fields["on_error"], "description", new)
    nested = TrainSpec.model_fields["training"].annotation.model_fields["epochs"]
    monkeypatch.setattr(nested, "description", "Epochs, as this test words it.")

    pages = reference_pages()
    assert new in pages["reference/job-spec.md"] and old not in pages["reference/job-spec.md"]
    assert "| `training.epochs` |" in pages["reference/train-spec.md"]
    assert "Epochs, as this test words it." in pages["reference/train-spec.md"]

    # and through mkdocs itself, in this process, so the hook sees the patched model
    from mkdocs.commands.build import build
    from mkdocs.config import load_config

    config = load_config(str(REPO / "mkdocs.yml"), site_dir=str(tmp_path / "site"))
    config.plugins.on_startup(command="build", dirty=False)
    try:
        build(config)
    finally:
        config.plugins.on_shutdown()
    html = (tmp_path / "site" / "reference" / "job-spec" / "index.html").read_text()
    assert new in html


def test_spec_references_list_every_key_with_its_description():
    pages = reference_pages()
    for model, page in ((JobSpec, "reference/job-spec.md"), (TrainSpec, "reference/train-spec.md")):
        for key, field in spec_fields(model):
            assert field.description, f"{model.__name__}.{key} has no description"
            assert f"| `{key}` |" in pages[page], key


def test_tasks_reference_lists_every_task_option_and_output_column():
    page = reference_pages()["reference/tasks.md"]
    for task in all_tasks():
        assert f"\n## {task.name}\n" in page
        for name, field in task.Options.model_fields.items():
            assert f"| `{name}` |" in page and field.description.split()[0] in page
        for column in task.output_fields():
            assert f"| `{column.name}` |" in page


def test_cli_reference_holds_every_command_and_option():
    page = reference_pages()["reference/cli.md"]
    parser = build_parser()
    commands = next(a for a in parser._actions if a.dest == "command").choices
    for name, command in commands.items():
        assert f"\n## corpusmill {name}\n" in page
        for action in command._actions:
            for flag in action.option_strings:
                assert flag in page, (name, flag)
