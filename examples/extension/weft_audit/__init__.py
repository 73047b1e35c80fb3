"""weft-audit: a third-party Weft extension that keeps an audit trail of created hosts.

It contributes the action module `weft_audit.audit` (entry point group
`weft.actions`) and the extension file `audit.flow` (group `weft.extensions`,
whose entry point names `EXTENSION`, the file's path). Kept import-light: Weft
loads this package on every `weft check` to find the file.
"""

import os

EXTENSION = os.path.join(os.path.dirname(os.path.abspath(__file__)), "audit.flow")
