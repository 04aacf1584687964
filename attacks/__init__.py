"""securegal.attacks: the leakage audit's attacks, each playing one curious party on its view.

Label inference by a feature party: :mod:`.label_inversion`, :mod:`.label_rounds`,
:mod:`.label_clustering`, :mod:`.model_completion`. Feature reconstruction by the label owner: :mod:`.hat_matrix`,
:mod:`.inversion_net`, :mod:`.active_residuals`. Every attack returns
:class:`~securegal.attacks.result.AttackResult` rows (score, no-transcript baseline, advantage).
"""
from . import (active_residuals, hat_matrix, inversion_net, label_clustering, label_inversion, label_rounds,
               model_completion)
from .features import KnownRows
from .labels import KnownLabels
from .result import AttackResult

__all__ = ["AttackResult", "KnownLabels", "KnownRows", "active_residuals", "hat_matrix", "inversion_net",
           "label_clustering", "label_inversion", "label_rounds", "model_completion"]
