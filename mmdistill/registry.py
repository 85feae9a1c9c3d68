"""Imports every module that defines gin configurables (see config.import_configurables)."""
import mmdistill.experiment  # noqa: F401
