"""The file-transfer service: ``send_file`` / ``del_file`` and the receiver that
``PeerManager`` hands every connection whose hello said purpose "file".

Every operation has its own fresh, authenticated connection (TLS if the node uses
it), so a big file never sits in front of a peer's messages.  The wire rules are in
``protocol/files.py``; this folder does the I/O and the file-system rules:

* ``sender``: the sending side (``FileSender``; ``send_file``/``del_file``, the
  API's entry points);
* ``receiver``: the receiving side (``FileReceiver``), its limits and counters;
* ``disk``: the file-system work of both sides (in worker threads), the rules that
  keep received files inside ``dest_path``, and the mapping of file-system errors;
* ``bulk_receive``: the receiver's loop in one worker thread, on a plain socket;
* ``thread_stage``: a worker thread fed by a queue (the receiver's writer).

Blocking file work never runs in the node's trio thread, and nothing a transfer
leaves behind survives its failure: any ending but success (refusal, timeout,
connection loss, cancellation) removes the temporary file and the folders the
transfer made.
"""

from .disk import MODE_MASK, FileChanged
from .receiver import FileCounters, FileReceiver, FileSettings, FileStatistics
from .sender import FileSender, del_file, send_file

__all__ = [
    "MODE_MASK",
    "FileChanged",
    "FileCounters",
    "FileReceiver",
    "FileSender",
    "FileSettings",
    "FileStatistics",
    "del_file",
    "send_file",
]
