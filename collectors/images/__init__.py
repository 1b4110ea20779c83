"""Acquired disk images as sources, read without mounting: E01/Ex01, raw/dd (split too), VMDK, VHD and VHDX.

The container is recognised by its magic, never by its name (:mod:`.container`). Every segment or extent is
opened by us with ``O_NOATIME`` and handed to the libyal bindings (``pyewf``, ``pyvhdi``, ``pyvmdk``) as file
objects, or read by our own EWF chunk reader (:mod:`.ewf`), so nothing in the image folder changes, not even
access times. All of them end as one :class:`~.disk.Disk` (``read_at``). Partition tables are parsed by
:mod:`collectors.partitions`; each NTFS volume is opened with ``pyfsntfs`` through an offset window over the
disk and exposed as a :class:`~collectors.vfs.VNode` tree (:mod:`.ntfs`), so the generic collector runs over
it exactly as over a folder; :mod:`.volumes` gives the volumes their drive letters, and :mod:`.record`
verifies the media and writes what the custody log keeps about the image.
"""
