"""faceblur: face image deblurring that helps face detection."""
