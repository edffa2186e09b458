package spec

// serviceDoc is a service deployment using references, manifests and a policy.
const serviceDoc = `slices:
  sliced:
    id: IoTService_sliced
    slice-parts:
      - dc-slice-part:
          name: dc-slice1
          vdus:
            - vdu:
                name: k8s-master
                VIM: KUBERNETES
                namespace: dojot
                commands:
                  - echo ${parts.dc-slice1.vdus.k8s-master.ip} $coreip ${HOME}
                manifests:
                  - apiVersion: v1
                    kind: ConfigMap
                    metadata: {name: edge}
                    data: {core: "${parts.dc-slice1.vim-ref.ip-api}"}
          elasticity:
            - policy:
                name: cpu-high
                operator: '>'
                value: 80
                trigger: {points: 3}
                metric-collector: {node-type: worker, metric-name: PERCENT_CPU_UTILIZATION, granularity: default}
                deployment:
                  constraints:
                    horizontal: {location: EUROPE.GREECE}
                post-deployment:
                  timers: {service-redeployment: 30, reactivate-elasticity: 120}
                  actions:
                    vertical:
                      - action: add-node
                      - action: {type: add-cpu, value: 1, max: 4}
                    horizontal:
                      - action: {type: add-part}
                        priority: 1
`
