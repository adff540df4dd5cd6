"""A figure of the report, saved once as a PNG file and read back for the report.

A figure node returns a matplotlib figure that carries its report title and caption
(``clnm_kedro.reporting.report.captioned``). This dataset writes it as one PNG, the title and
caption in the file's text chunks (``Title``, ``Description``); loading gives the figure as the
report embeds it, ``{"title", "caption", "data_uri"}``: the file written, not a second drawing.
"""

from __future__ import annotations

import base64
import io
from pathlib import Path
from typing import Any

from kedro.io import AbstractDataset, DatasetError
from kedro_datasets._typing import ImagePreview
from matplotlib.figure import Figure
from PIL import Image

from clnm_kedro.reporting.report import embed_png, figure_caption


class ReportFigureDataset(AbstractDataset[Figure, dict[str, str]]):
    """One figure as a PNG file (``dpi``: its resolution); loads as the report's figure."""

    def __init__(
        self,
        filepath: str,
        dpi: int = 150,
        metadata: dict[str, Any] | None = None,
    ) -> None:
        self._filepath = Path(filepath)
        self._dpi = dpi
        self.metadata = metadata

    def save(self, data: Figure) -> None:
        """Write the figure, with its report title and caption, atomically."""
        title, caption = figure_caption(data)
        buffer = io.BytesIO()
        data.savefig(
            buffer,
            format="png",
            dpi=self._dpi,
            metadata={"Title": title, "Description": caption},
        )
        self._filepath.parent.mkdir(parents=True, exist_ok=True)
        partial = self._filepath.with_name(self._filepath.name + ".partial")
        partial.write_bytes(buffer.getvalue())
        partial.replace(self._filepath)

    def load(self) -> dict[str, str]:
        """The PNG with its title and caption, ready for the report."""
        if not self._filepath.is_file():
            raise DatasetError(f"No figure at '{self._filepath}' yet: run the pipeline first.")
        png = self._filepath.read_bytes()
        with Image.open(io.BytesIO(png)) as image:
            text = dict(getattr(image, "text", {}))
        return embed_png(png, text.get("Title", ""), text.get("Description", ""))

    def preview(self) -> ImagePreview:
        """kedro-viz: the figure itself."""
        return ImagePreview(base64.b64encode(self._filepath.read_bytes()).decode("ascii"))

    def _exists(self) -> bool:
        return self._filepath.is_file()

    def _describe(self) -> dict[str, Any]:
        return {"filepath": str(self._filepath), "dpi": self._dpi}
