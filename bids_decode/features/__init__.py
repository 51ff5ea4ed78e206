"""Stage 2, features: DNN unit activations of the stimulus images, and the store they are read from.

Networks (:mod:`.networks`, :mod:`.zoo`, :mod:`.graphs`) and extraction (:mod:`.extract`) need torch
and are imported only where used; the feature store (:mod:`.store`, :mod:`.h5file`) does not.
"""
