"""Files and folders opened relative to directory descriptors, never through a link: a folder
source's files (``disk``) and the files blocksync keeps in its store (``safefile``)."""
