"""Readers and writers of the file formats the collections use.

Nothing here imports scene code (VTK, MRML, slicer-core): every function takes
and returns plain data (numpy arrays, dataclasses, paths), so the same readers
serve the Slicer application, the command line and headless scripts.
"""
