"""Evaluation: Tables 1-3, blur realism, WIDER FACE."""

# Method kinds that restore with a trained stage's checkpoint (`methods.<name>.workdir`; in the
# pipeline, the stage its `stage` names).
TRAINED_METHOD_KINDS = ("srn", "cyclegan")
