"""Joint training on bAbI 10k, PE LS RN, 3 hops.

    python -m experiments.babi.main --config=experiments/babi/configs/joint_10k.py \
        --workdir=runs/babi_joint_10k

Task 3 trains on the 1k training file (the 10k archive lacks it; the run says so).
"""

from experiments.babi.configs import variants


def get_config(arg=None):
  del arg
  return variants.get_config("joint_10k_pe_ls_rn_3hops")
