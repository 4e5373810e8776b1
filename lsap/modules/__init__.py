"""Lightning modules: LSAP_E (encoder training), LSAP_O (per-image optimisation) and PTI refinement."""

from lsap.modules.lsap_e import LSAP_E
from lsap.modules.lsap_o import LSAP_O, InversionResult
from lsap.modules.pti import PTI

__all__ = ["LSAP_E", "LSAP_O", "PTI", "InversionResult"]
