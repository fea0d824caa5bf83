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


ANY_FACE = "any face"
TRUTH_FACE = "ground truth's face (IoU ≥ 0.5)"


def table2(report: dict) -> str:
  """Face-detection success rate on ground truth / blurred / restored (the paper's Table 2),
  under both counting rules, for each detector."""
  restored = [m for m in report["methods"] if m != "blurred"]
  header = ["Test set", "Detector", "Counted as found", "Ground truth", "Blurred"] + \
      [report["methods"][m] for m in restored]
  first = report.get("detector_name", "detector")
  second = (report.get("second_detector") or {}).get("name")

  def row(label, detector, rule, detection, truth=True):
    return [label, detector, rule, f"{detection['ground_truth']:.2f}" if truth else "-",
            f"{detection['blurred']:.2f}"] + \
        [f"{detection[m]:.2f}" if m in detection else "-" for m in restored]

  rows = []
  for name, entry in report["test_sets"].items():
    label = f"{name} ({entry['num_images']})"
    rows.append(row(label, first, ANY_FACE, entry["detection"]))
    if "detection_iou" in entry:
      rows.append(row(label, first, TRUTH_FACE, entry["detection_iou"]))
    if entry.get("second_detector"):
      rows.append(row(label, second, ANY_FACE, entry["second_detector"]["detection"]))
      rows.append(row(label, second, TRUTH_FACE, entry["second_detector"]["detection_iou"]))
  real = report.get("real_blurred")
  if real:
    label = f"real blurred ({real['num_images']}, no ground truth)"
    rows.append(row(label, first, ANY_FACE, real["detection"], truth=False))
    if real.get("second_detector"):
      rows.append(row(label, second, ANY_FACE, real["second_detector"]["detection"],
                      truth=False))
  return _table(header, rows)


def table2_notes(report: dict) -> str:
  detectors = f"`{report.get('detector_name', 'detector')}`: {report['detector']}"
  if report.get("second_detector"):
    second = report["second_detector"]
    detectors += f"; `{second['name']}`: {second['description']}"
  return (f"Detectors: {detectors}. Counted as found — *{ANY_FACE}*: the paper's rule, the "
          f"detector returns any confident detection. *{TRUTH_FACE}*: no face boxes are "
          "annotated in these test sets, so each image's face is the same detector's "
          "highest-scored detection on its ground truth, and a blurred or restored image counts "
          "only if one of its detections overlaps that box with IoU ≥ 0.5 (a detection elsewhere "
          "does not count; an image whose ground truth has no detection counts as not found, so "
          "the ground-truth column is the same under both rules).")


def table3(report: dict) -> str | None:
  """Identity preservation: dlib's descriptor distance to the ground truth, same-person rate."""
  scored = report.get("identity")
  if not scored or not scored["test_sets"]:
    return None
  restored = [m for m in report["methods"] if m != "blurred"]
  header = ["Test set (faces scored)", "Blurred"] + [report["methods"][m] for m in restored]
  rows = []
  for name, entry in scored["test_sets"].items():
    cells = []
    for column in ["blurred", *restored]:
      result = entry["columns"].get(column)
      cells.append("-" if not result or result["distance"] is None else
                   f"{result['distance']:.3f} / {result['same_person_rate']:.2f}")
    rows.append([f"{name} ({entry['num_scored']} of {entry['num_images']})"] + cells)
  return _table(header, rows)


def realism_table(report: dict) -> str | None:
  realism = report.get("blur_realism")
  if not realism:
    return None
  def share(value):
    return "-" if value is None else f"{value:.2f}"

  rows = [[name, f"{r['mmd2']:.4f}", f"{r['p_value']:.3f}", f"{r['classifier_accuracy']:.2f}",
           share(r.get("precision")), share(r.get("recall"))] for name, r in realism.items()]
  return _table(["Synthetic blur", "MMD² to real blur (lower = closer)", "p-value",
                 "real-vs-synthetic classifier accuracy (0.5 = indistinguishable)",
                 "precision (share inside the real photos' support)",
                 "recall (share of real photos it covers)"], rows)


# report.json's difference keys -> (column title, digits); detection titles name the detector.
DIFFERENCE_COLUMNS = {"psnr": ("ΔPSNR dB", 2), "ssim": ("ΔSSIM", 4),
                      "identity_distance": ("Δidentity distance (lower = closer)", 3),
                      "detection": ("Δdetection {first}, any face", 2),
                      "detection_iou": ("Δdetection {first}, IoU ≥ 0.5", 2),
                      "second_detector_detection": ("Δdetection {second}, any face", 2),
                      "second_detector_detection_iou": ("Δdetection {second}, IoU ≥ 0.5", 2)}


def _interval(entry: dict | None, digits: int, signed: bool = True) -> str:
  """'+0.41 [+0.22, +0.60]'; '-' where the metric was not scored or no face had a value."""
  if not entry or entry["mean"] is None:
    return "-"
  sign = "+" if signed else ""
  low, high = ("?" if value is None else f"{value:{sign}.{digits}f}"
               for value in (entry["low"], entry["high"]))
  return f"{entry['mean']:{sign}.{digits}f} [{low}, {high}]"


def differences_table(report: dict) -> str | None:
  """One row per test set and comparison, one column per metric any row has."""
  sets = {name: entry.get("differences") or {} for name, entry in report["test_sets"].items()}
  present = {metric for compared in sets.values() for values in compared.values()
             for metric in values}
  shown = [metric for metric in DIFFERENCE_COLUMNS if metric in present]
  if not shown:
    return None
  detectors = {"first": report.get("detector_name", "detector"),
               "second": (report.get("second_detector") or {}).get("name", "second detector")}
  header = ["Test set", "a − b"] + [DIFFERENCE_COLUMNS[m][0].format(**detectors) for m in shown]
  rows = []
  for name, compared in sets.items():
    for comparison, values in compared.items():
      first, second = comparison.split("-")
      rows.append([name, f"{first} − {second}"]
                  + [_interval(values.get(m), DIFFERENCE_COLUMNS[m][1]) for m in shown])
  return _table(header, rows)


def differences_notes(report: dict) -> list[str]:
  """How to read the differences table, and each set's oracle share."""
  settings = report.get("intervals") or {}
  lines = [f"Each cell: the mean over the faces of the per-face difference a − b, and its "
           f"{settings.get('confidence', 0.95) * 100:g} % percentile bootstrap interval "
           f"({settings.get('num_resamples', 10_000):,} resamples of the faces, each face's "
           "pair kept together; faces a metric could not score are left out). A difference is "
           "a claim only when its interval excludes 0. Identity distance is reported as a − b "
           "too: lower is closer to the ground truth, so a negative difference favours a. "
           "Detection: the difference in success rate, each face counting 0 or 1."]
  for name, entry in report["test_sets"].items():
    share = entry.get("oracle_share")
    if share and not share.get("defined", True):
      lines += ["", f"Oracle share on {name}: undefined, the oracle gains nothing measurable "
                    "over the blurred input there (its interval reaches 0)."]
    elif share:
      lines += ["", f"Oracle share on {name}: ours recovers {_interval(share, 2, signed=False)} "
                    "of the oracle's PSNR gain over the blurred input (mean(ours − blurred) / "
                    f"mean(oracle − blurred) over {share['count']} faces; interval: the ratio "
                    "of means on each resample)."]
  return lines


def _protocol(report: dict) -> str:
  """' [protocol: ...]' for every table header; '' for a report written before protocols."""
  header = (report.get("protocol") or {}).get("header")
  return f" [{header}]" if header else ""


def missing_outputs_notes(report: dict) -> list[str]:
  """Under Table 1: each folder method's missing or unreadable outputs, by test set."""
  lines = []
  for name, entry in [*report["test_sets"].items(), ("real blurred", report.get("real_blurred"))]:
    for method, count in ((entry or {}).get("missing_outputs") or {}).items():
      if count:
        lines.append(f"- `{method}` on {name}: {count} of {entry['num_images']} outputs missing "
                     "or unreadable; the blurred input stands in for each (listed at the end).")
  return ["**Folder methods with missing outputs:**", "", *lines, ""] if lines else []


def markdown(report: dict) -> str:
  protocol = _protocol(report)
  parts = ["# faceblur evaluation", ""]
  if report.get("protocol"):
    parts += [f"Scoring protocol `{report['protocol']['name']}`: "
              f"{report['protocol']['description']}.", ""]
  parts += [f"## Table 1: restoration quality (PSNR dB / SSIM, RGB in [0, 1]){protocol}", "",
            table1(report), "", *missing_outputs_notes(report),
            f"## Table 2: face-detection success rate{protocol}", "", table2(report), "",
            table2_notes(report), ""]
  identity = table3(report)
  if identity:
    threshold = report["identity"]["same_person_distance"]
    parts += ["## Table 3: identity preservation (descriptor distance to the ground truth / "
              f"same-person rate at {threshold}){protocol}", "", identity, "",
              f"Descriptor: {report['identity']['descriptor']}. Each cell: the mean Euclidean "
              "distance between the face's descriptor and its ground truth's (lower = closer), "
              f"and the share of faces under {threshold}, dlib's same-person threshold. The "
              "face box comes from the ground-truth image, so a face is scored even where "
              "detection fails on the blurred or restored one; faces scored: those the box "
              "was found for.", ""]
  differences = differences_table(report)
  if differences:
    parts += [f"## Paired differences (mean [95 % bootstrap CI over the faces]){protocol}", "",
              differences,
              "", *differences_notes(report), ""]
  realism = realism_table(report)
  if realism:
    parts += [f"## Blur realism: synthetic blur vs the real blurred photos{protocol}", "",
              realism, "",
              "MMD² with a Gaussian kernel on blur features (spectrum fall-off, gradient "
              "statistics, directionality); permutation p-value.", ""]
  for name, entry in report["test_sets"].items():
    parts += [f"Figure for {name}: ![{name}]({entry['figure']}) — per-image scores in "
              f"`{entry['per_image_csv']}`.", ""]
  skipped = report.get("skipped") or []
  if skipped:
    parts += [f"**{len(skipped)} test image(s) could not be read and are not counted above:**",
              ""] + [f"- {reason}" for reason in skipped] + [""]
  missing = report.get("missing_outputs") or []
  if missing:
    parts += [f"**{len(missing)} output(s) of folder methods were missing or unreadable; the "
              "blurred input stands in for each:**", ""] + [f"- {line}" for line in missing] + [""]
  unaligned = report.get("unaligned") or []
  if unaligned:
    parts += [f"**{len(unaligned)} image(s) could not be aligned (ECC failed) and were scored "
              "unaligned:**", ""] + [f"- {line}" for line in unaligned] + [""]
  versions = ", ".join(f"{k} {v}" for k, v in report.get("versions", {}).items())
  parts += [f"Versions: {versions}. Wall time: {report['wall_time_s']} s.", ""]
  return "\n".join(parts)


def write_reports(output: pathlib.Path, report: dict) -> None:
  (output / "report.json").write_text(json.dumps(report, indent=2, default=float))
  text = markdown(report)
  (output / "report.md").write_text(text)
  print("\n" + text, flush=True)
  print(f"Report: {output / 'report.md'}", flush=True)
