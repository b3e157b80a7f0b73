// The portal's static file server as its own process (started by `cloister up`).
import { runPortalServer } from "./portal-server.js";

runPortalServer();
