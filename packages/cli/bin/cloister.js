#!/usr/bin/env node
// Committed shim so npm can link the `cloister` bin before the build has produced dist/ (npm ci links
// bins first, then runs the root `prepare` script that builds).
import "../dist/bin.js";
