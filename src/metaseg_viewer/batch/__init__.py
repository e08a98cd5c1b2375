"""Segment a whole archive, resumably, in-process or on Dask: ``metaseg batch`` and :func:`run_batch`.

Re-exports only: finding studies in :mod:`.studies`, one study on a worker in :mod:`.study_task`,
scheduling in :mod:`.runner`, the output tables in :mod:`.summary`. Importing this package loads
neither torch nor Dask.
"""

from metaseg_viewer.batch.runner import SCHEDULERS, BatchReport, dask_installed, run_batch
from metaseg_viewer.batch.studies import Study, find_studies
from metaseg_viewer.batch.study_task import BatchSettings, run_study
from metaseg_viewer.batch.summary import SUMMARY_COLUMNS

__all__ = ["SCHEDULERS", "SUMMARY_COLUMNS", "BatchReport", "BatchSettings", "Study", "dask_installed",
           "find_studies", "run_batch", "run_study"]
