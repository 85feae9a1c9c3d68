"""Imports every module that defines gin configurables (see config.import_configurables)."""
import mmdistill.data.annotations  # noqa: F401
import mmdistill.data.dataset  # noqa: F401
import mmdistill.data.heatmaps  # noqa: F401
import mmdistill.data.masking  # noqa: F401
import mmdistill.data.sources  # noqa: F401
import mmdistill.data.transforms  # noqa: F401
import mmdistill.demo  # noqa: F401
import mmdistill.eval.classifiers  # noqa: F401
import mmdistill.eval.fewshot  # noqa: F401
import mmdistill.experiment  # noqa: F401
import mmdistill.models.checkpoint  # noqa: F401
import mmdistill.models.decoder  # noqa: F401
import mmdistill.models.heads  # noqa: F401
import mmdistill.models.vit  # noqa: F401
import mmdistill.pipeline  # noqa: F401
import mmdistill.stages  # noqa: F401
import mmdistill.train.loop  # noqa: F401
