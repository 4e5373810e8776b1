"""Lightning modules: LSAP_E (encoder training), LSAP_O (per-image optimisation), PTI
refinement and StyleGAN2 training."""

from lsap.modules.hfgi import HFGI
from lsap.modules.lsap_e import LSAP_E
from lsap.modules.lsap_o import LSAP_O, InversionResult
from lsap.modules.pti import PTI
from lsap.modules.restyle import ReStyle
from lsap.modules.sam import SAM
from lsap.modules.stylegan2 import StyleGAN2

__all__ = ["HFGI", "LSAP_E", "LSAP_O", "PTI", "ReStyle", "SAM", "InversionResult", "StyleGAN2"]
