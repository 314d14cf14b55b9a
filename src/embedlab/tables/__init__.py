"""Learned tables for the categorical columns beside the text, under a byte budget.

:class:`TableModel` joins a text column's frozen embedding, learned embedding tables for
categorical columns (kinds ``full``, ``hash``, ``qr``, ``mixed``, ``unified``:
:mod:`embedlab.tables.layout`) and numeric columns in one network; :func:`plan_tables`
measures quality against bytes for every kind and budget.
"""

from embedlab.tables.columns import TablesWarning, parse_bytes
from embedlab.tables.layout import KINDS, TableLayout, lay_out
from embedlab.tables.model import TableModel
from embedlab.tables.synthetic import SyntheticRecords, synthetic_records

__all__ = [
    "KINDS",
    "SyntheticRecords",
    "TableLayout",
    "TableModel",
    "TablesWarning",
    "lay_out",
    "parse_bytes",
    "synthetic_records",
]
