#!/usr/bin/env node
import { processIo } from "./cli-io.js";
import { runCli } from "./run-cli.js";

process.exitCode = runCli(process.argv.slice(2), processIo);
