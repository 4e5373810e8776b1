"""Lightning modules: LSAP_E (encoder training), LSAP_O (per-image optimisation) and PTI refinement."""

from lsap.modules.lsap_e import LSAP_E
from lsap.modules.lsap_o import LSAP_O, InversionResult
from lsap.modules.stylegan2 import StyleGAN2
from lsap.modules.pti import PTI, apply_pti_delta, load_pti_delta, make_pti_delta

__all__ = ["LSAP_E", "LSAP_O", "PTI", "StyleGAN2", "InversionResult", "apply_pti_delta", "load_pti_delta", "make_pti_delta"]
