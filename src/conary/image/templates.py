"""repart.d from the jinja2 templates in images/ (``*.conf.j2``), rendered for one target and image.

Each template becomes one ``repart.d`` file of the same name without ``.j2``; systemd-repart reads
them in name order, which is the partition order on the disk (00-esp, then 10-root).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import jinja2

from conary.distro_tree import tree_dir
from conary.errors import InputError
from conary.targets import Target


@dataclass(frozen=True)
class RenderContext:
    target: Target
    filesystem: str
    esp_image: str  # where repart finds the ESP's FAT image
    root_image: str  # where repart finds the root filesystem image
    root_label: str


def templates_dir() -> Path:
    return tree_dir("images")


def render_definitions(dest: Path, context: RenderContext, templates: Path | None = None) -> list[Path]:
    """Render every template into DEST; returns the files written, in order."""
    templates = templates or templates_dir()
    names = sorted(p.name for p in templates.glob("*.conf.j2"))
    if not names:
        raise InputError("no repart templates (*.conf.j2)", where=str(templates))
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(templates)),
        undefined=jinja2.StrictUndefined,
        keep_trailing_newline=True,
        autoescape=False,
    )
    dest.mkdir(parents=True, exist_ok=True)
    written = []
    for name in names:
        try:
            text = env.get_template(name).render(**context.__dict__)
        except jinja2.TemplateError as err:
            raise InputError(f"template error: {err}", where=str(templates / name)) from None
        out = dest / name.removesuffix(".j2")
        out.write_text(text)
        written.append(out)
    return written
