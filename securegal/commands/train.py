"""``securegal train``: one federation on the embedded default, with optional baselines."""
from __future__ import annotations

import argparse
import time
from pathlib import Path

from ..errors import ConfigError
from ..federation import plain_trainers
from ..learners.registry import LEARNERS
from ..privacy.dp.accountant import ACCOUNTANTS
from ..privacy.dp.layers import DPTrainers, LabelDPConfig, LabelDPResiduals
from ..privacy.dp.trainer import NO_FEEDBACK_SHARES, DPConfig
from ..run import train


def add_parser(sub) -> None:
    p = sub.add_parser("train", help="train GAL on a dataset or CSV and write a run directory",
                       formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    src = p.add_mutually_exclusive_group()
    src.add_argument("--dataset", help="offline dataset: diabetes, boston, iris, wine, breast_cancer, digits, blob, mnist")
    src.add_argument("--csv", type=Path, help="your own CSV file (header row, numeric cells)")
    p.add_argument("--target", help="label column of --csv")
    p.add_argument("--parties", "-M", type=int, default=4, help="number of organizations M (the label owner is one)")
    p.add_argument("--learner", default="linear", help=f"local learner: {', '.join(LEARNERS)}")
    p.add_argument("--rounds", "-T", type=int, default=10, help="GAL rounds T")
    p.add_argument("--seed", type=int, default=0, help="seed of the split and the learners")
    p.add_argument("--baselines", action="store_true", help="also train Alone, Joint and GAL with uniform weights")
    p.add_argument("--out", type=Path, help="run directory (default runs/<dataset>-<time>)")
    p.add_argument("--overwrite", action="store_true", help="replace the results in a non-empty --out")
    p.add_argument("--weights", choices=("learned", "uniform"), default=None,
                   help="assistance weights (default: learned; uniform under --epsilon/--label-epsilon)")
    p.add_argument("--eta", type=float, default=None,
                   help="fixed step instead of the line search (default under DP: 0.75 * M / T)")
    p.add_argument("--eta-max", type=float, default=10.0, help="upper bound of the line-searched step")
    p.add_argument("--local-loss", choices=("l2", "l1"), help="local learners' loss (default: l1 for L1 tasks, else l2)")
    p.add_argument("--residuals", choices=("plain", "ckks"), default="plain",
                   help="how residuals travel to feature parties: plain, or CKKS-encrypted under the label owner's key")
    dp = p.add_argument_group("differential privacy (docs/privacy.md)")
    dp.add_argument("--epsilon", type=float, help="each feature party's (epsilon, delta)-DP budget for the run")
    dp.add_argument("--delta", type=float, default=1e-5, help="delta of the DP budgets; must be < 1/n")
    dp.add_argument("--accountant", choices=ACCOUNTANTS, default="rdp", help="privacy accountant")
    dp.add_argument("--dp-feature-clip", type=float, default=0.5, help="B: feature rows (scaled by 1/sqrt(d)) clipped to this norm")
    dp.add_argument("--dp-residual-clip", type=float, default=1.0, help="C: residual rows clipped to this norm")
    dp.add_argument("--dp-prediction-clip", type=float, default=0.01, help="C_f: returned prediction rows clipped to this norm")
    dp.add_argument("--dp-feedback", choices=("on", "off"), default=None,
                    help="release noised per-row train predictions (budget share 0.1); default on with plain "
                         "residuals, off with --residuals ckks, where their noise bound is too loose to help "
                         "(docs/privacy.md 5b)")
    dp.add_argument("--label-epsilon", type=float,
                    help="label-DP budget of the label owner's residuals (classification; plain residuals)")
    p.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    p.add_argument("--save-ground-truth", action="store_true",
                   help="also write ground_truth.npz (evaluation-only copy of the training labels and "
                        "features) so that `securegal audit` can score attacks on this run")
    net = p.add_argument_group("networked federation (parties run `securegal party serve`)")
    mode = net.add_mutually_exclusive_group()
    mode.add_argument("--federation", type=Path, help="federation.toml: data, parties' addresses, TLS, output dir")
    mode.add_argument("--resume", type=Path, metavar="DIR", help="continue the checkpointed networked run in DIR")
    net.add_argument("--insecure", action="store_true",
                     help="no TLS, no peer authentication: loopback demos only (refused elsewhere, warns loudly)")
    net.add_argument("--min-parties", type=int, help="stop cleanly when fewer parties (label owner included) answer")
    p.set_defaults(func=run)


def run(args) -> int:
    if args.federation or args.resume:
        return run_networked(args)
    if args.min_parties is not None or args.insecure:
        raise ConfigError("--min-parties and --insecure apply to networked runs (--federation or --resume)")
    if args.dataset is None and args.csv is None:
        args.dataset = "breast_cancer"
    out = args.out or Path("runs") / f"{args.dataset or args.csv.stem}-{time.strftime('%Y%m%d-%H%M%S')}"
    private = args.epsilon is not None or args.label_epsilon is not None
    weighting = args.weights or ("uniform" if private else "learned")
    eta = args.eta if args.eta is not None or not private else 0.75 * args.parties / args.rounds
    trainers, channel = plain_trainers, None
    if args.epsilon is not None:
        feedback = args.dp_feedback or ("off" if args.residuals == "ckks" else "on")
        shares = {} if feedback == "on" else {"shares": dict(NO_FEEDBACK_SHARES)}
        trainers = DPTrainers(DPConfig(args.epsilon, args.delta, args.accountant, feature_clip=args.dp_feature_clip,
                                       residual_clip=args.dp_residual_clip,
                                       prediction_clip=args.dp_prediction_clip, **shares))
    elif args.dp_feedback is not None:
        raise ConfigError("--dp-feedback applies to feature-DP runs (--epsilon)")
    if args.label_epsilon is not None:
        channel = LabelDPResiduals(LabelDPConfig(args.label_epsilon, args.delta, args.accountant))
    if args.residuals == "ckks":
        if args.label_epsilon is not None:
            raise ConfigError("--label-epsilon protects labels from feature parties that see plaintext residuals; "
                              "with --residuals ckks they only ever see ciphertexts, so use one or the other")
        if args.epsilon is not None:
            from ..privacy.hedp import CkksDPTrainers, ClippedCkksResiduals

            channel, trainers = ClippedCkksResiduals(args.dp_residual_clip), CkksDPTrainers(trainers.default)
        else:
            from ..privacy.he.layers import CkksResiduals, ckks_trainers

            channel, trainers = CkksResiduals(), ckks_trainers
    metrics = train(args.dataset, csv=args.csv, target=args.target, parties=args.parties, learner=args.learner,
                    rounds=args.rounds, seed=args.seed, baselines=args.baselines, out=out, overwrite=args.overwrite,
                    weighting=weighting, eta=eta, eta_max=args.eta_max, local_loss=args.local_loss,
                    trainers=trainers, channel=channel, progress=not args.no_progress,
                    ground_truth=args.save_ground_truth)
    print(summary(metrics, out))
    return 3 if "stopped" in metrics["gal"] else 0


def run_networked(args) -> int:
    from ..network import FederationConfig, train_federation

    if args.dataset or args.csv or args.baselines or args.out:
        raise ConfigError("with --federation/--resume the federation file names the data and the output directory; "
                          "drop --dataset/--csv/--out/--baselines")
    if args.resume:
        cfg = FederationConfig.for_resume(args.resume, args.insecure, min_parties=args.min_parties)
    else:
        cfg = FederationConfig.load(args.federation, args.insecure, min_parties=args.min_parties)
    metrics = train_federation(cfg, resume=args.resume is not None, overwrite=args.overwrite,
                               progress=not args.no_progress)
    print(summary(metrics, cfg.out))
    return 3 if "stopped" in metrics["gal"] else 0


def summary(metrics: dict, out: Path) -> str:
    unit = "accuracy %" if metrics["metric"] == "accuracy" else "MAD (lower is better)"
    lines = [f"securegal: {metrics['dataset']} ({metrics['task']}), M={metrics['parties']}, T={metrics['rounds']}, "
             f"learner={metrics['learner']}, residuals={metrics['residuals']}, seed={metrics['seed']}",
             f"  n train/validation/test = {metrics['n_train']}/{metrics['n_validation']}/{metrics['n_test']}",
             f"  {'method':<16}{'test ' + unit}"]
    for key, label in (("gal", "GAL"), ("gal_uniform", "GAL uniform w"), ("alone", "Alone"), ("joint", "Joint")):
        if key in metrics:
            lines.append(f"  {label:<16}{metrics[key]['test']:.2f}")
    if metrics["weights"]:
        last = ", ".join(f"{n}={w:.2f}" for n, w in zip(metrics["party_names"], metrics["weights"][-1]))
        lines.append(f"  last-round weights: {last}; eta per round: {', '.join(f'{e:.2f}' for e in metrics['eta'])}")
    for party, block in metrics.get("privacy", {}).items():
        lines.append(f"  privacy {party}: epsilon spent {block['epsilon_spent']:.3f} of {block['epsilon_budget']:g} "
                     f"(delta={block['delta']:g}, {block['accountant']}, {len(block['releases'])} releases)")
    if "stopped" in metrics["gal"]:
        lines.append(f"  STOPPED EARLY: {metrics['gal']['stopped']}")
    lines.append(f"  wrote {out}/metrics.json, curve.png, transcripts/ ({metrics['seconds']:.1f} s)")
    return "\n".join(lines)
