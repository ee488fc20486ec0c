// The desk console's script (src/admin/console.rs): loaded from this node
// only (the Content-Security-Policy allows nothing else). Pages work
// without it; it only adds live updates where a page asks for them.
"use strict";
