"""Every testable claim of the two seed articles and of Xu et al. 2015, one registry entry each, with the
premises under which it is meant. Sources: W = Wei, "Must Know Tips/Tricks in Deep Neural Networks"
(seeds/004), T = "Tips and Tricks for Deep Learning" (seeds/002), X = Xu et al. 2015 Tables 3-5
(docs/reproduction.md §1). The premises' thresholds are fixed here, before the runs that test them, and
their sources are in docs/findings.md ("Premises")."""
from __future__ import annotations

import math
from typing import Any

from trickbench.claims.evidence import (class_count_ratio, control_mean, control_reaches_loss, lr_dropped,
                                        max_norm_bound, smallest_class, stopped_early, treatment_fraction)
from trickbench.claims.model import CHANCE, ENSEMBLE_AXIS, Claim, Premise, claim

W, T, X = "Wei, Must Know Tips/Tricks", "Tips and Tricks for DL", "Xu et al. 2015"

# ------------------------------------------------------------------------------------------------ premises
FITS = Premise("control_train_error", "the control fits its training data", control_mean("train_error"), 0.05,
               "at_most", "Xu et al. Tables 3-4 compare nets that end below 0.6 % (CIFAR-10) and 14 % (CIFAR-100) "
               "training error; 0.05 keeps the comparison among nets that fit their data")
OVERFITS = Premise("control_gap", "the control overfits: a validation − training error gap to close",
                   control_mean("gap"), 0.10, "at_least",
                   "Wei §7 Fig. 3 (a large gap between training and validation accuracy means overfitting); "
                   "Xu et al.'s CIFAR-10 NiN has a gap of 0.12")
BEFORE_CEILING = Premise("control_train_error", "measured before the ceiling: the control still misclassifies "
                         "training images", control_mean("train_error"), 0.02, "at_least",
                         "docs/reproduction.md §9: a speed claim needs a measure taken before both sides reach "
                         "the ceiling; at 0 training error a final loss compares converged nets, not speed")
REACHES_THRESHOLD = Premise("control_reaching_threshold", "every control run reaches the loss threshold (the "
                            "epochs are not censored)", control_reaches_loss, 1.0, "at_least",
                            "a censored epoch count is a lower bound, not a speed")
NOT_FIRST_EPOCH = Premise("control_epochs_to_threshold", "the threshold is not reached in the first epoch (a "
                          "speed to resolve)", control_mean("epochs_to_train_loss"), 2.0, "at_least",
                          "one epoch is the resolution of the curves")
PLATEAU_FIRES = Premise("treatment_runs_whose_lr_fell", "the plateau rule divides the rate in every run",
                        treatment_fraction(lr_dropped), 1.0, "at_least", "a remedy that never acts is not tested")
EARLY_STOP_FIRES = Premise("treatment_runs_stopped_early", "early stopping fires in at least half of the runs",
                           treatment_fraction(stopped_early), 0.5, "at_least", "a remedy that never acts is not tested")
MAX_NORM_BINDS = Premise("treatment_runs_where_max_norm_binds", "the max-norm constraint rescales some unit (binds) "
                         "in every run", treatment_fraction(max_norm_bound), 1.0, "at_least",
                         "a constraint that never binds is not tested; runs record their rescalings since issue 24 "
                         "(metrics max_norm_rescalings), older runs read as not measured")
IMBALANCED = Premise("class_ratio", "the training classes are imbalanced (largest/smallest ≥ 10)", class_count_ratio,
                     10.0, "at_least", "Wei, class imbalance: the remedies are for skewed class counts")
MODERATE_RATIO = Premise("class_ratio", "the remedy's strength is moderate: largest/smallest class ≤ 20 (the weight "
                         "or repetition of the rarest class)", class_count_ratio, 20.0, "at_most",
                         "a 235× weight or repetition of one-image classes is an extreme, not the seed's remedy")
MODERATE_UNDERSAMPLE = Premise("smallest_class", "undersampling keeps at least 10 images of every class per epoch",
                               smallest_class, 10.0, "at_least",
                               "undersampling to one image per class is an extreme, not the seed's remedy")

# ------------------------------------------------------------------------------------------------ initializers
_NON_ZERO_INITS = ["lecun_normal", "xavier_uniform", "he_normal"]

claim("init-zeros-no-learning", f"{W} §3 (all zero initialization)",
      "All-zero initialization does not learn: its test error stays at chance.",
      "seed-initializers", "initializers", "initializer", "zeros", CHANCE, "test_error", "equivalent", margin=0.05)
for _init in _NON_ZERO_INITS:
    claim(f"init-small-random-slower-than-{_init.split('_')[0]}", f"{W} §3 (small random numbers, calibrating the variances)",
          f"Small random weights (0.001·N(0,1)) learn slower than {_init}: a higher training loss after the same epochs.",
          "seed-initializers", "initializers", "initializer", "small_random", _init, "train_loss", "greater",
          premises=(BEFORE_CEILING,))
claim("init-he-beats-xavier-relu", f"{W} §3 (current recommendation); {T} (Xavier initialization)",
      "For ReLU, He initialization gives a lower test error than Xavier's.",
      "seed-initializers", "initializers", "initializer", "he_normal", "xavier_uniform", "test_error", "less",
      where={"activation": ["relu"]})
for _act in ("sigmoid", "tanh"):  # seed-activation-speed: measured after 3 epochs, before ReLU's ceiling
    claim(f"act-{_act}-slower-than-relu", f"{W} §5 (ReLU pros: converges much faster than sigmoid/tanh)",
          f"{_act} learns slower than ReLU: a higher training loss after the same epochs (non-zero initializations).",
          "seed-activation-speed", "speed", "activation", _act, "relu", "train_loss", "greater",
          where={"initializer": _NON_ZERO_INITS}, premises=(BEFORE_CEILING,))
claim("act-tanh-beats-sigmoid", f"{W} §5 (tanh: zero-centred, always preferred to sigmoid)",
      "tanh learns faster than sigmoid: a lower training loss after the same epochs (non-zero initializations).",
      "seed-initializers", "initializers", "activation", "tanh", "sigmoid", "train_loss", "less",
      where={"initializer": _NON_ZERO_INITS}, premises=(BEFORE_CEILING,))

# ------------------------------------------------------------------------------------------------ learning rates
claim("lr-too-high-fails", f"{W} §7 Fig. 1 (very high learning rate)",
      "Too high a learning rate (1.0) diverges or stalls: a higher final training error than 0.01 (diverged = chance).",
      "seed-learning-rates", "learning_rates", "lr", 1.0, 0.01, "train_error", "greater")
claim("lr-too-low-linear", f"{W} §7 Fig. 1-2 (low learning rate: too linear)",
      "Too low a learning rate (1e-4) leaves the loss falling near-linearly: late/early decline ratio above 0.01's.",
      "seed-learning-rates", "learning_rates", "lr", 0.0001, 0.01, "late_over_early", "greater")
claim("lr-too-low-slow", f"{W} §7 Fig. 1 (low learning rate: loss decreases very slowly)",
      "Too low a learning rate (1e-4) ends at a higher training loss than 0.01 after the same epochs.",
      "seed-learning-rates", "learning_rates", "lr", 0.0001, 0.01, "train_loss", "greater")
claim("lr-plateau-beats-constant", f"{W} §4 (learning rate: divide by 2 or 5 when validation stops improving)",
      "Dividing the rate when the validation loss stalls beats a constant rate (start 0.1): lower test error.",
      "seed-learning-rates-v2", "plateau", "schedule", "plateau", "constant", "test_error", "less",
      premises=(PLATEAU_FIRES,))

# ------------------------------------------------------------------------------------------------ data
for _prep in ("zero_center", "normalize"):
    claim(f"prep-{_prep.replace('_', '-')}-beats-raw", f"{W} §2 (zero-center, normalize)",
          f"Pre-processing by {_prep.replace('_', '-')} gives a lower test error than raw pixels.",
          "seed-augmentations", "preprocessing", "preprocessing", _prep, "none", "test_error", "less")
claim("prep-pca-whitening-worse", f"{W} §2 (PCA whitening exaggerates the noise; not used with CNNs in practice)",
      "PCA whitening gives a higher test error than per-channel normalisation.",
      "seed-augmentations-v2", "whitening", "preprocessing", "pca_whiten", "normalize", "test_error", "greater")
# tested where their premises hold: seed-augmentations-v2's control memorises its images
for _aug, _name in ((["flip", "crop"], "flip-crop"), (["color_jitter"], "color-jitter"), (["hsv"], "hsv"),
                    (["fancy_pca"], "fancy-pca")):
    claim(f"aug-{_name}-reduces-test-error", f"{W} §1 (data augmentation)",
          f"Augmenting with {'+'.join(_aug)} reduces test error against no augmentation.",
          "seed-augmentations-v2", "augmentations", "augmentations", _aug, [], "test_error", "less",
          premises=(FITS, OVERFITS))
for _aug, _name in ((["gaussian_noise"], "noise"), (["rotation"], "rotation"), (["contrast"], "contrast")):
    claim(f"aug-{_name}-reduces-test-error", f"{T} §3 (rotated, noisy and contrast-changed images)",
          f"Augmenting with {'+'.join(_aug)} reduces test error against no augmentation.",
          "seed-augmentations-v2", "augmentations", "augmentations", _aug, [], "test_error", "less",
          premises=(FITS, OVERFITS))

# ------------------------------------------------------------------------------------------------ regularization
# max-norm and dropout's test error in seed-regularizers-v2, whose control memorises its images
for _reg, _preset, _binds in (("l2", "seed-regularizers", ()), ("dropout", "seed-regularizers", ()),
                              ("max_norm", "seed-regularizers-v2", (MAX_NORM_BINDS,))):
    claim(f"reg-{_reg.replace('_', '-')}-shrinks-gap", f"{W} §6 and §7 Fig. 3 (regularization closes the gap)",
          f"{_reg} shrinks the train/validation error gap against no regularization.",
          _preset, "regularizers", "regularizers", [_reg], [], "gap", "less", premises=(OVERFITS, *_binds))
claim("reg-dropout-lowers-test-error", f"{T} §5 (besides preventing overfitting, dropout improves the performance)",
      "Dropout lowers the test error against no regularization.",
      "seed-regularizers-v2", "regularizers", "regularizers", ["dropout"], [], "test_error", "less",
      premises=(FITS, OVERFITS))
claim("reg-batch-norm-faster", f"{T} (batch normalization speeds up learning)",
      "Batch normalization reaches a training loss of 1.0 in fewer epochs than no normalization.",
      "seed-regularizers", "regularizers", "regularizers", ["batch_norm"], [], "epochs_to_train_loss", "less",
      loss_threshold=1.0, premises=(REACHES_THRESHOLD, NOT_FIRST_EPOCH))
claim("reg-early-stopping-keeps-accuracy", f"{T} (early stopping)",
      "Early stopping does not lose test accuracy: its test error is at most 0.01 above training to the end.",
      "seed-regularizers", "regularizers", "regularizers", ["early_stopping"], [], "test_error", "at_most",
      margin=0.01, premises=(EARLY_STOP_FIRES,))
claim("bn-allows-higher-lr", f"{T} §3 (batch normalization allows the use of higher learning rates)",
      "At a high learning rate (0.5), batch normalization gives a lower test error than no normalization.",
      "seed-batchnorm", "batchnorm", "regularizers", ["batch_norm"], [], "test_error", "less",
      where={"lr": [0.5], "initializer": ["he_normal"]})
claim("bn-higher-lr-trains-faster", f"{T} §3 (higher learning rates, increasing the training speed)",
      "With batch normalization, lr 0.5 reaches a lower training loss than lr 0.05 after the same epochs.",
      "seed-batchnorm", "batchnorm", "lr", 0.5, 0.05, "train_loss", "less",
      where={"regularizers": [["batch_norm"]], "initializer": ["he_normal"]}, premises=(BEFORE_CEILING,))
claim("bn-rescues-poor-init", f"{T} §3 (batch normalization eliminates the worry of initializing the parameters)",
      "From small random weights (0.001·N(0,1)), batch normalization reaches a lower training loss than no normalization.",
      "seed-batchnorm", "batchnorm", "regularizers", ["batch_norm"], [], "train_loss", "less",
      where={"initializer": ["small_random"], "lr": [0.05]}, premises=(BEFORE_CEILING,))
claim("bn-init-insensitive", f"{T} §3 (batch normalization eliminates the worry of initializing the parameters)",
      "With batch normalization, small random weights and He initialization reach the same test error (within 0.01).",
      "seed-batchnorm", "batchnorm", "initializer", "small_random", "he_normal", "test_error", "equivalent",
      margin=0.01, where={"regularizers": [["batch_norm"]], "lr": [0.05]})

# ------------------------------------------------------------------------------------------------ optimizers
# AdaGrad and RMSProp need more than seed-optimizers' 30 epochs to reach the threshold: seed-optimizers-long
# trains the same points until they do, with an epoch budget per optimizer (a constant rate: the budget only
# says where a run stops), so `epochs` goes with the treatment like its lr
for _opt, _preset in (("sgd", "seed-optimizers"), ("adagrad", "seed-optimizers-long"),
                      ("rmsprop", "seed-optimizers-long")):
    claim(f"opt-adam-faster-than-{_opt}", f"{T} §4 (Adam outperforms and converges faster; its optimizer figure)",
          f"Adam reaches a training loss of 1.0 in fewer epochs than {_opt} (each at its usual learning rate).",
          _preset, "optimizers", "optimizer", "adam", _opt, "epochs_to_train_loss", "less",
          loss_threshold=1.0, free_axes=("lr", "momentum", "epochs"), premises=(REACHES_THRESHOLD, NOT_FIRST_EPOCH))
claim("batch-size-lr-unchanged", f"{W} §4 (gradients averaged over the mini-batch: the lr need not change with it)",
      "At the same learning rate, batch 256 reaches the same test error as batch 64 (within 0.01).",
      "seed-optimizers", "batch_size", "batch_size", 256, 64, "test_error", "equivalent", margin=0.01)

# ------------------------------------------------------------------------------------------------ transfer
_SOURCE_MODEL = "artifacts/seed-transfer-source/runs/source/seed-0/model.pt"  # the presets' train.finetune_from
claim("transfer-small-beats-scratch", f"{T} §3 (transfer learning); {W} §4 (fine-tune on pre-trained models)",
      "With 20 images per class, fine-tuning a model trained on other classes beats training from scratch (test error).",
      "seed-transfer-small", "transfer", "finetune_from", _SOURCE_MODEL, None, "test_error", "less")
claim("transfer-small-linear-beats-full", f"{W} §4 (very little data: a linear classifier on the top layer); {T} §3 "
      "(small training size: only the softmax layer is trained)",
      "With 20 images per class, training only the classifier beats fine-tuning every layer (test error).",
      "seed-transfer-small", "transfer", "finetune_mode", "linear", "full", "test_error", "less")
claim("transfer-large-top-beats-linear", f"{W} §4 (quite a lot of data: fine-tune a few top layers)",
      "With 1,000 images per class, fine-tuning the top block beats training only the classifier (test error).",
      "seed-transfer-large", "transfer", "finetune_mode", "top", "linear", "test_error", "less")
claim("transfer-large-full-beats-top", f"{T} §3 (large training size: train almost all layers)",
      "With 1,000 images per class, fine-tuning every layer beats fine-tuning the top block only (test error).",
      "seed-transfer-large", "transfer", "finetune_mode", "full", "top", "test_error", "less")

# ------------------------------------------------------------------------------------------------ ensembles
claim("ens-seeds-beat-best-member", f"{W} §8 (same model, different initialization)",
      "An ensemble of one configuration's seeds has a lower test error than its best seed (chosen on validation).",
      "seed-regularizers", "regularizers", ENSEMBLE_AXIS, "seeds", "best_member", "test_error", "less")
claim("ens-top-k-beats-best-single", f"{W} §8 (top models discovered during cross-validation)",
      "The top-k models (by validation loss) together beat the best single model on test error (within each seed).",
      "seed-regularizers", "regularizers", ENSEMBLE_AXIS, "top_k_of_seed", "best_single", "test_error", "less")
claim("ens-snapshot-beats-best-single", f"{W} §8 (different checkpoints of a single model)",
      "A run's last epochs' checkpoints together beat that run alone on test error (every run).",
      "seed-regularizers", "regularizers", ENSEMBLE_AXIS, "snapshot_of_run", "best_single", "test_error", "less")
claim("ens-snapshot-cycles-beat-run", f"{W} §8 (different checkpoints of a single model), with warm restarts",
      "With warm restarts (3 cosine cycles), the models at the cycles' ends together beat the run's final model on test "
      "error (Huang et al. 2017).",
      "seed-learning-rates", "snapshot", ENSEMBLE_AXIS, "snapshot_of_run", "best_single", "test_error", "less")

# ------------------------------------------------------------------------------------------------ class imbalance
_STRENGTH = {"oversample": (MODERATE_RATIO,), "undersample": (MODERATE_UNDERSAMPLE,),
             "class_weighted_loss": (MODERATE_RATIO,)}
for _preset, _balances in (("seed-class-imbalance", ("oversample", "undersample", "class_weighted_loss")),
                           ("seed-class-imbalance-v2", ("capped_oversample", "sqrt_class_weighted_loss"))):
    for _balance in _balances:
        _premises = (IMBALANCED, *_STRENGTH.get(_balance, ()))
        _name = _balance.replace("_", "-")
        claim(f"imbalance-{_name}-improves", f"{W} Miscellaneous (class imbalance)",
              f"{_balance} lowers the test log-loss on the imbalanced NDSB subset against plain sampling.",
              _preset, "class_balance", "class_balance", _balance, "none", "test_loss", "less", premises=_premises)
        claim(f"imbalance-{_name}-minority-recall", f"{W} Miscellaneous (class imbalance)",
              f"{_balance} raises the test mean per-class recall (every class weighs the same) on the NDSB subset.",
              _preset, "class_balance", "class_balance", _balance, "none", "test_mean_recall", "greater",
              premises=_premises)

# ------------------------------------------------------------------------------------------------ Xu et al.
_TABLES = {"cifar10": ("scaled-cifar10", "Table 3 (CIFAR-10)", "test_error", "train_error"),
           "cifar100": ("paper-cifar100", "Table 4 (CIFAR-100)", "test_error", "train_error"),
           "ndsb": ("scaled-ndsb", "Table 5 (NDSB)", "test_loss", "train_loss_running")}
_LABEL = {"relu": "ReLU", "leaky_relu_a100": "Leaky ReLU a=100", "leaky_relu_a5.5": "Leaky ReLU a=5.5",
          "prelu": "PReLU", "rrelu": "RReLU"}


def _xu(claim_id: str, table: str, statement: str, treatment: str, control: str, which: str, expected: str,
        **options: Any) -> None:
    preset, name, held_out, train_metric = _TABLES[table]
    metric = {"held_out": held_out, "train": train_metric}.get(which, which)
    claim(claim_id, f"{X} {name}", statement, preset, "activations", "activation", treatment, control, metric,
          expected, paper=(table, which), **options)


for _act in ("leaky_relu_a5.5", "prelu", "rrelu"):
    _xu(f"xu-c10-{_act.replace('_', '-')}-beats-relu", "cifar10", f"{_LABEL[_act]} has a lower CIFAR-10 test error than ReLU.",
        _act, "relu", "held_out", "less", premises=(FITS,) + ((OVERFITS,) if _act == "rrelu" else ()))
_xu("xu-c10-a100-same-as-relu", "cifar10", "Leaky ReLU a=100 does not differ from ReLU on CIFAR-10 (test error within 0.01).",
    "leaky_relu_a100", "relu", "held_out", "equivalent", margin=0.01, premises=(FITS,))
_xu("xu-c10-a5.5-beats-a100", "cifar10", "The larger leaky slope (a=5.5) beats the smaller (a=100) on CIFAR-10 test error.",
    "leaky_relu_a5.5", "leaky_relu_a100", "held_out", "less", premises=(FITS,))
_xu("xu-c10-prelu-lowest-train-vs-relu", "cifar10", "PReLU reaches a lower CIFAR-10 training error than ReLU.",
    "prelu", "relu", "train", "less", premises=(BEFORE_CEILING,))
_xu("xu-c10-prelu-lowest-train-vs-a100", "cifar10",
    "PReLU reaches a lower CIFAR-10 training error than Leaky ReLU a=100 (the paper's runner-up).",
    "prelu", "leaky_relu_a100", "train", "less", premises=(BEFORE_CEILING,))
_xu("xu-c10-rrelu-regularizes", "cifar10", "RReLU overfits less than ReLU: a smaller test − train error gap on CIFAR-10.",
    "rrelu", "relu", "test_gap", "less", premises=(FITS, OVERFITS))
for _act in ("leaky_relu_a100", "leaky_relu_a5.5", "prelu", "rrelu"):
    _xu(f"xu-c100-{_act.replace('_', '-')}-beats-relu", "cifar100",
        f"{_LABEL[_act]} has a lower CIFAR-100 test error than ReLU.", _act, "relu", "held_out", "less")
_xu("xu-c100-prelu-lowest-train", "cifar100", "PReLU reaches a lower CIFAR-100 training error than ReLU.",
    "prelu", "relu", "train", "less")
for _act in ("relu", "leaky_relu_a5.5", "prelu"):
    _xu(f"xu-ndsb-rrelu-beats-{_act.replace('_', '-')}", "ndsb",
        f"RReLU has a lower NDSB held-out log-loss than {_LABEL[_act]}.", "rrelu", _act, "held_out", "less",
        premises=(OVERFITS,))
_xu("xu-ndsb-prelu-lowest-train", "ndsb", "PReLU reaches a lower NDSB training log-loss (training mode) than ReLU.",
    "prelu", "relu", "train", "less")


def paper_effect(claim: Claim) -> float:
    """The paper's own treatment − control (Xu et al.'s tables: single runs, no interval); NaN for a claim
    no paper table answers."""
    if claim.paper is None:
        return math.nan
    from trickbench.report.paper import reference

    name, column = claim.paper
    rows = reference(name).rows

    def value(activation: str) -> float:
        train, held_out = rows[activation]
        return {"train": train, "held_out": held_out, "test_gap": held_out - train}[column]

    return value(claim.treatment) - value(claim.control)


from trickbench.claims.ladder import register_rungs  # noqa: E402  (the ladder repeats claims registered above)

register_rungs()
