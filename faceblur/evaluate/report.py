"""Turns an evaluation into report.json and report.md, laid out like the paper's tables."""

import json
import pathlib


def _table(header: list[str], rows: list[list[str]]) -> str:
  lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
  lines += ["| " + " | ".join(row) + " |" for row in rows]
  return "\n".join(lines)


def table1(report: dict) -> str:
  """PSNR / SSIM of every method on every paired test set (the paper's Table 1)."""
  sets = list(report["test_sets"])
  header = ["Method"] + [f"{name} PSNR / SSIM" for name in sets]
  rows = []
  for method, label in report["methods"].items():
    cells = []
    for name in sets:
      quality = report["test_sets"][name]["quality"][method]
      cells.append(f"{quality['psnr']:.2f} / {quality['ssim']:.4f}")
    rows.append([label] + cells)
  return _table(header, rows)


def table2(report: dict) -> str:
  """Face-detection success rate on ground truth / blurred / restored (the paper's Table 2)."""
  restored = [m for m in report["methods"] if m != "blurred"]
  header = ["Test set", "Ground truth", "Blurred"] + [report["methods"][m] for m in restored]
  rows = []
  for name, entry in report["test_sets"].items():
    detection = entry["detection"]
    rows.append([f"{name} ({entry['num_images']})", f"{detection['ground_truth']:.2f}",
                 f"{detection['blurred']:.2f}"] + [f"{detection[m]:.2f}" for m in restored])
  real = report.get("real_blurred")
  if real:
    detection = real["detection"]
    rows.append([f"real blurred ({real['num_images']}, no ground truth)", "-",
                 f"{detection['blurred']:.2f}"]
                + [f"{detection[m]:.2f}" if m in detection else "-" for m in restored])
  return _table(header, rows)


def realism_table(report: dict) -> str | None:
  realism = report.get("blur_realism")
  if not realism:
    return None
  rows = [[name, f"{r['mmd2']:.4f}", f"{r['p_value']:.3f}", f"{r['classifier_accuracy']:.2f}"]
          for name, r in realism.items()]
  return _table(["Synthetic blur", "MMD² to real blur (lower = closer)", "p-value",
                 "real-vs-synthetic classifier accuracy (0.5 = indistinguishable)"], rows)


def markdown(report: dict) -> str:
  parts = ["# faceblur evaluation", "",
           "## Table 1: restoration quality (PSNR dB / SSIM, RGB in [0, 1])", "", table1(report),
           "", "## Table 2: face-detection success rate", "", table2(report), "",
           f"Detector: {report['detector']}. A face counts as found when the detector returns "
           "a confident detection (no ground-truth boxes are known for these faces).", ""]
  realism = realism_table(report)
  if realism:
    parts += ["## Blur realism: synthetic blur vs the real blurred photos", "", realism, "",
              "MMD² with a Gaussian kernel on blur features (spectrum fall-off, gradient "
              "statistics, directionality); permutation p-value.", ""]
  for name, entry in report["test_sets"].items():
    parts += [f"Figure for {name}: ![{name}]({entry['figure']}) — per-image scores in "
              f"`{entry['per_image_csv']}`.", ""]
  skipped = report.get("skipped") or []
  if skipped:
    parts += [f"**{len(skipped)} test image(s) could not be read and are not counted above:**",
              ""] + [f"- {reason}" for reason in skipped] + [""]
  versions = ", ".join(f"{k} {v}" for k, v in report.get("versions", {}).items())
  parts += [f"Versions: {versions}. Wall time: {report['wall_time_s']} s.", ""]
  return "\n".join(parts)


def write_reports(output: pathlib.Path, report: dict) -> None:
  (output / "report.json").write_text(json.dumps(report, indent=2, default=float))
  text = markdown(report)
  (output / "report.md").write_text(text)
  print("\n" + text, flush=True)
  print(f"Report: {output / 'report.md'}", flush=True)
