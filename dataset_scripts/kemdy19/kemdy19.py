"""KEMDy19 (ETRI): Korean emotional conversations, speech and transcripts, as a `datasets` loading script.

The corpus must be obtained from ETRI; pass its unpacked folder as `data_dir`:

    load_dataset("dataset_scripts/kemdy19", data_dir="/path/to/KEMDy19", trust_remote_code=True)

Configs: `single_label` (default, tied rows dropped) and `multi_label`. Parsing is shared with KEMDy20 in
`kemdy_adapters.hf_dataset` / `kemdy_adapters.corpus` (pip install kemdy-adapters).
"""

from kemdy_adapters import hf_dataset


class Kemdy19(hf_dataset.Kemdy19):
    """The builder `load_kemdy` uses, as a loading script for `load_dataset`."""
