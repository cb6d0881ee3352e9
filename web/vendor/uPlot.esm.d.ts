// Types for /assets/vendor/uPlot.esm.js, which src/broker/listeners/static.ts serves from the installed
// `uplot` package (node_modules/uplot/dist/uPlot.esm.js): the dashboard imports it by this relative
// path so the browser needs no import map or bundler.
import uPlot from 'uplot';
export default uPlot;
