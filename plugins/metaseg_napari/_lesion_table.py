"""The widget's lesion table: one row per lesion of the current result, numbered as the core numbers
them, slices as napari's slider counts them (from 0); each row knows where its lesion is."""

from __future__ import annotations

from qtpy.QtCore import Qt
from qtpy.QtWidgets import QHeaderView, QTableWidget, QTableWidgetItem

from metaseg_viewer.lesions import slice_span


class LesionTable(QTableWidget):
    """Read-only rows of :func:`metaseg_viewer.segment.lesion_rows`; :meth:`location` gives a
    row's lesion centre ``(slice, row, column)`` for jumping to it."""

    def __init__(self) -> None:
        super().__init__(0, 5)
        self.setHorizontalHeaderLabels(["#", "slice", "size", "centre row, col", "mean p"])
        self.horizontalHeaderItem(1).setToolTip("Slices as napari's slider numbers them (from 0); a 3-D lesion's "
                                                "first–last slice")
        self.setEditTriggers(QTableWidget.NoEditTriggers)
        self.setSelectionBehavior(QTableWidget.SelectRows)
        self.horizontalHeader().setSectionResizeMode(QHeaderView.ResizeToContents)
        self.verticalHeader().setVisible(False)

    def show_lesions(self, rows: list[dict]) -> None:
        """Fill the table with ``rows`` (3-D lesions when they have ``centroid_z``)."""
        self.setRowCount(len(rows))
        volume = bool(rows) and "centroid_z" in rows[0]
        for i, row in enumerate(rows):
            z = row.get("centroid_z", row.get("slice_index", 0))
            size = row.get("volume_mm3") or row.get("area_mm2")
            size_text = f"{row['size_px']} px" + (f" / {size:.0f} mm{'³' if volume else '²'}" if size else "")
            mean = row.get("mean_probability")
            where = slice_span(row) if volume else str(row.get("slice_index", 0))  # the slider's numbers, from 0
            cells = [str(i + 1), where, size_text, f"{row['centroid_row']:.0f}, {row['centroid_col']:.0f}",
                     "" if mean is None else f"{mean:.2f}"]
            for j, text in enumerate(cells):
                item = QTableWidgetItem(text)
                item.setData(Qt.UserRole, (float(z), float(row["centroid_row"]), float(row["centroid_col"])))
                self.setItem(i, j, item)

    def location(self, row: int) -> tuple[float, float, float] | None:
        """The centre of row ``row``'s lesion as ``(slice, row, column)``, ``None`` past the end."""
        item = self.item(row, 0)
        return None if item is None else item.data(Qt.UserRole)
