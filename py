unknown pair 'js-'; choose from js->js, py->py, py->js, js->py
