"""Multi-domain LoRA adapters for the Flux transformer (asymmetric and masked), routing and file formats."""

from procseq.adapters.asymmetric import AsymmetricLoRAConfig, AsymmetricLoRALinear, add_asymmetric_lora
from procseq.adapters.io import adapter_file_info, export_domain, import_kohya_asymmetric, load_adapters, save_adapters
from procseq.adapters.masked import MaskedLoRAConfig, MaskedLoRALinear, add_masked_lora
from procseq.adapters.routing import (
    DEFAULT_TARGET_MODULES,
    RoutedLoRALinear,
    adapter_layers,
    add_domain,
    bypassed,
    clear_routing,
    disable,
    disabled,
    domains,
    enable,
    remove_adapters,
    resolve_routing,
    route,
    set_routing,
    trainable_parameters,
    unrouted,
)

__all__ = [
    "AsymmetricLoRAConfig", "AsymmetricLoRALinear", "DEFAULT_TARGET_MODULES", "MaskedLoRAConfig",
    "MaskedLoRALinear", "RoutedLoRALinear", "adapter_file_info", "adapter_layers", "add_asymmetric_lora",
    "add_domain", "bypassed", "add_masked_lora", "clear_routing", "disable", "disabled", "domains", "enable", "export_domain",
    "import_kohya_asymmetric", "load_adapters", "remove_adapters", "resolve_routing", "route", "save_adapters",
    "set_routing", "trainable_parameters", "unrouted",
]
