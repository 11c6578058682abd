"""Every Table 1 setting by name: ``--config=experiments/babi/configs/variants.py:NAME``.

NAME = ``<mode>_<size>_<features>_<hops>``, e.g. ``joint_1k_pe_ls_rn_3hops``,
``per_task_10k_bow_3hops``, ``joint_1k_pe_ls_lw_3hops``, ``per_task_10k_pe_ls_rn_star_3hops``:

* mode: ``joint`` (d=50, 60 epochs, anneal every 15) or ``per_task`` (d=20, 100 epochs,
  anneal every 25);
* size: ``1k`` (folder en) or ``10k`` (en-10k; task 3 trains on the 1k file, said so);
* features: ``bow`` | ``pe`` | ``pe_ls`` | ``pe_ls_rn`` | ``pe_ls_lw`` |
  ``pe_ls_rn_star`` (d=100 and a ReLU after each hop, the paper's 10k model);
* hops: ``1hops`` | ``2hops`` | ``3hops``.

Example:

    python -m experiments.babi.main \
        --config=experiments/babi/configs/variants.py:per_task_1k_pe_ls_3hops \
        --workdir=runs/babi_per_task_1k_pe_ls
"""

import re

from experiments.babi.configs import default

_NAME = re.compile(
  r"^(joint|per_task)_(1k|10k)_(bow|pe|pe_ls|pe_ls_rn|pe_ls_lw|pe_ls_rn_star)"
  r"_([123])hops$"
)


def get_config(arg=None):
  name = arg or "joint_1k_pe_ls_rn_3hops"
  match = _NAME.match(name)
  if not match:
    raise ValueError(f"unknown setting {name!r}; see the docstring of {__name__}")
  mode, size, features, hops = match.groups()
  config = default.get_config()
  config.paper_setting = name
  config.mode = mode
  if mode == "per_task":
    config.model.embedding_size = 20
    config.train.num_epochs = 100
    config.train.anneal_every = 25
    config.train.ls_max_epochs = 20
    config.train.bucket_sizes = ()
    config.train.word_bucket_sizes = ()
  config.data.lang = "en" if size == "1k" else "en-10k"
  config.model.num_hops = int(hops)
  config.model.encoding = "bow" if features == "bow" else "pe"
  config.train.linear_start = "ls" in features
  config.train.random_noise = 0.1 if "rn" in features else 0.0
  config.model.tying = "layerwise" if "lw" in features else "adjacent"
  if features == "pe_ls_rn_star":
    config.model.embedding_size = 100
    config.model.relu = True
  return config
