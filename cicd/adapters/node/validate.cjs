#!/usr/bin/env node
// Validates a generated adapter with its tool's own JavaScript validator: `node validate.cjs circleci|codecatalyst FILE`.
// Exit 0 valid, 1 invalid (one line per problem on stderr), 2 bad usage.
'use strict';
const fs = require('fs');

const [tool, file] = process.argv.slice(2);
if (!tool || !file) {
  console.error('usage: node validate.cjs circleci|codecatalyst FILE');
  process.exit(2);
}
const text = fs.readFileSync(file, 'utf8');

function fail(lines) {
  for (const line of lines) console.error(line);
  process.exit(1);
}

// CircleCI decides conditional steps (`when`/`unless`: a `condition` and `steps`) when it compiles the config; the
// SDK parser has no conditional steps, so their shape is checked here and their steps are inlined for it (every
// branch, so every step is parsed whatever the condition).
function inlineConditionals(steps, where, problems) {
  const out = [];
  for (const step of steps || []) {
    const key = step && typeof step === 'object' ? Object.keys(step)[0] : null;
    if (key === 'when' || key === 'unless') {
      const body = step[key] || {};
      const extra = Object.keys(body).filter((k) => k !== 'condition' && k !== 'steps');
      if (!('condition' in body)) problems.push(`${where}: ${key} step without a condition`);
      if (!Array.isArray(body.steps) || !body.steps.length) problems.push(`${where}: ${key} step without steps`);
      if (extra.length) problems.push(`${where}: ${key} step with unknown keys ${extra.join(', ')}`);
      out.push(...inlineConditionals(body.steps, where, problems));
    } else {
      out.push(step);
    }
  }
  return out;
}

if (tool === 'circleci') {
  const parser = require('@circleci/circleci-config-parser');
  const yaml = require('yaml');
  const raw = yaml.parse(text);
  try {
    const shapes = [];
    const resolved = yaml.parse(text);
    for (const kind of ['commands', 'jobs']) {
      for (const [name, body] of Object.entries(resolved[kind] || {})) {
        if (body && Array.isArray(body.steps)) body.steps = inlineConditionals(body.steps, `${kind}.${name}`, shapes);
      }
    }
    if (shapes.length) fail(shapes);
    const config = parser.parseConfig(yaml.stringify(resolved));
    const known = new Set(config.jobs.map((job) => job.name));
    const problems = [];
    for (const [name, workflow] of Object.entries(raw.workflows || {})) {
      for (const entry of workflow.jobs || []) {
        const [job, params] = typeof entry === 'string' ? [entry, {}] : Object.entries(entry)[0];
        if ((params || {}).type === 'approval') continue;
        if (!known.has(job)) problems.push(`workflow ${name}: unknown job '${job}'`);
        for (const need of (params || {}).requires || []) {
          const names = (workflow.jobs || []).map((e) => (typeof e === 'string' ? e : Object.values(e)[0].name || Object.keys(e)[0]));
          if (!names.includes(need)) problems.push(`workflow ${name}: job '${job}' requires '${need}', which the workflow does not run`);
        }
      }
    }
    if (problems.length) fail(problems);
    console.log(`circleci-config-parser: ${config.jobs.length} jobs, ${config.workflows.length} workflows parsed`);
  } catch (err) {
    fail([`circleci-config-parser: ${err && err.message ? err.message : err}`]);
  }
} else if (tool === 'codecatalyst') {
  const { WorkflowDefinition } = require('@aws/codecatalyst-workflows-sdk');
  const yaml = require('js-yaml');
  const result = WorkflowDefinition.validate(yaml.load(text));
  if (!result.valid) fail(result.errors.map((e) => `${e.property}: ${e.message}`));
  console.log('codecatalyst-workflows-sdk: valid');
} else {
  console.error(`unknown tool '${tool}'`);
  process.exit(2);
}
