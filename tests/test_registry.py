"""Choices by name: a mistyped job, method, data source or detector is one line listing them."""

import dataclasses

import ml_collections
import pytest

from faceblur import detectors, jobs
from faceblur.data import factory
from faceblur.errors import ConfigError
from faceblur.evaluate import evaluation
from faceblur.registry import Registry


def test_registry_keeps_order_fields_and_refuses_doubles():
  @dataclasses.dataclass(frozen=True)
  class Entry:
    function: object
    size: int

  sizes = Registry("no size {name!r} (have {choices}) for {where}", entry=Entry)
  small = sizes.register("small", size=1)(len)
  sizes.register("large", size=9)(max)
  assert small is len and sizes.names() == ("small", "large") and "large" in sizes
  assert sizes.get("large") == Entry(max, 9)
  with pytest.raises(ConfigError, match=r"^no size 'huge' \(have small, large\) for x$"):
    sizes.get("huge", where="x")
  with pytest.raises(ValueError, match="twice"):
    sizes.register("small", size=2)(min)
  with pytest.raises(TypeError, match="plain"):
    Registry("{name}").register("a", size=1)


def test_unknown_job_and_missing_workdir():
  with pytest.raises(ConfigError, match="config.job='nope' is not one of cyclegan, synthesize, "
                     "srn, evaluate, unsharp_outputs, evaluate_wider_face, deblur, export, "
                     "pipeline"):
    jobs.run(ml_collections.ConfigDict({"job": "nope"}), None)
  with pytest.raises(ConfigError, match="the srn job needs --workdir"):
    jobs.run(ml_collections.ConfigDict({"job": "srn"}), None)
  assert not jobs.JOBS.get("deblur").needs_workdir and jobs.JOBS.get("srn").needs_workdir
  assert not jobs.JOBS.get("export").needs_workdir


def test_unknown_or_wrongly_paired_data_source_kind(tmp_path):
  with pytest.raises(ConfigError, match="unknown data source kind 'folders'; choose one of "
                     "folder, celeb_a, wider_face, demo_sharp, demo_blurred, paired_folder, "
                     "tfds_pairs, kernel_blurred, camera_blurred"):
    factory.make_source(factory.source_spec("folders", path=str(tmp_path)))
  with pytest.raises(ConfigError, match="'paired_folder' is paired; one of folder, celeb_a, "
                     "wider_face, demo_sharp, demo_blurred is needed here"):
    factory.make_source(factory.source_spec("paired_folder", path=str(tmp_path)))
  with pytest.raises(ConfigError, match="'demo_sharp' is unpaired; one of paired_folder, "):
    factory.make_paired_source(factory.source_spec("demo_sharp"))
  assert len(factory.make_source(factory.source_spec("demo_sharp", count=3, size=16))) == 3


def test_unknown_evaluation_method_and_detector():
  specs = ml_collections.ConfigDict({
      "blurred": {"kind": "identity", "label": "Blurred input", "workdir": ""},
      "typo": {"kind": "srm", "label": "", "workdir": ""}})
  with pytest.raises(ConfigError, match="methods.typo.kind='srm' is not one of identity, "
                     "richardson_lucy, srn, cyclegan"):
    evaluation.build_methods(specs)
  del specs["typo"]
  (method,) = evaluation.build_methods(specs)
  assert (method.name, method.label, method.restore("image")) == ("blurred", "Blurred input",
                                                                   "image")
  with pytest.raises(ConfigError, match=r"unknown detector 'nope' \(known: mtcnn, haar, "
                     r"dlib_hog, dlib_mmod\)"):
    detectors.make_detector("nope")
