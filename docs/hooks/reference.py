"""MkDocs hook (mkdocs.yml `hooks:`): adds the reference pages generated from the code
(corpusmill/docs_reference.py) to the site at build time. They exist only in the build: the
job spec, train spec, tasks and CLI reference are never committed, so they cannot drift."""
from __future__ import annotations

from mkdocs.structure.files import File, Files

from corpusmill.docs_reference import reference_pages


def on_files(files: Files, config) -> Files:
    for path, markdown in reference_pages().items():
        if files.get_file_from_path(path) is not None:
            raise ValueError(f"docs/{path} is generated at build time: delete the file")
        files.append(File.generated(config, path, content=markdown))
    return files
